"""Fault injection, one class of failure per section: a store read while it is rewritten,
text files in other encodings, damaged caches and stores, full disks, killed runs, network
errors, absurd configs, two runs into one folder. Each case must end in exit code 2 and one
line naming the problem (or a listed skip), lose nothing already written, and let the rerun
complete. Inputs are tiny so that the module stays within the suite's time budget."""

from __future__ import annotations

import threading

import numpy as np

from claptune.embed import embed_to_store, encode_text, load_store
from test_embed import model  # noqa: F401 - the tiny HF CLAP of test_embed


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- a store read while it is rewritten ----------------------------------------------------------
def test_a_reader_polling_a_store_never_sees_ids_paired_with_other_rows(model, tmp_path):  # noqa: F811
    words = [f"sound {i}" for i in range(12)]
    truth = dict(zip(words, encode_text(model, words, progress=False), strict=True))
    out = tmp_path / "store"
    embed_to_store(model, words, out, kind="text", progress=False)
    done = threading.Event()
    reads, wrong, errors = [0], [], []

    def poll() -> None:
        while not done.is_set():
            try:
                store = load_store(out)
            except Exception as err:  # noqa: BLE001 - every error is a failure of the test
                errors.append(repr(err))
                continue
            reads[0] += 1
            for item, row in zip(store.ids, store.embeddings, strict=True):
                if not np.allclose(row, truth[item], atol=1e-6):
                    wrong.append(item)

    readers = [threading.Thread(target=poll) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        # every rewrite reorders the view (this run's items come in its order), from cached parts
        for n in range(40):
            order = words[::-1] if n % 2 else words
            embed_to_store(model, order[: 6 + n % 7], out, kind="text", progress=False)
    finally:
        done.set()
        for r in readers:
            r.join()
    assert reads[0] > 20 and not errors and not wrong, (reads[0], errors[:3], wrong[:3])
    assert len(list(out.glob("embeddings-*.npy"))) <= 2  # old versions are cleaned up
