"""Fault injection, one class of failure per section: a store read while it is rewritten,
text files in other encodings, damaged caches and stores, full disks, killed runs, network
errors, absurd configs, two runs into one folder. Each case must end in exit code 2 and one
line naming the problem (or a listed skip), lose nothing already written, and let the rerun
complete. Inputs are tiny so that the module stays within the suite's time budget."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from claptune.cli import main
from claptune.embed import embed_to_store, encode_text, load_store
from claptune.errors import ClaptuneError
from conftest import write_tiny_corpus, write_tone
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


# -- text files in other encodings ---------------------------------------------------------------
LATIN1 = "caf\xe9 au lait\nrain\n".encode("latin-1")  # byte 0xe9 at offset 3


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (LATIN1, "byte 0xe9 at offset {}"),
        ("rain\n".encode("utf-16"), "UTF-16"),  # with its byte-order mark, first in the file
        (b"rain\n\x00\x01\x02\x03", "NUL byte at offset {}"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "byte 0x89 at offset {}"),
    ],
)
def test_every_user_text_reader_refuses_other_encodings_in_one_line(tmp_path, data, needle):
    from claptune.audio import find_audio
    from claptune.curation import class_names_from, read_pairs
    from claptune.data.captioned import read_captions
    from claptune.data.dataset import read_csv

    at = {LATIN1: 3, b"rain\n\x00\x01\x02\x03": 5}.get(data, 0)
    readers = {
        "classes.txt": class_names_from,
        "captions.txt": read_captions,
        "captions.csv": read_captions,
        "list.txt": lambda p: find_audio([p]),
        "meta.csv": lambda p: read_csv(Path(p), ["path"]),
        "pairs.csv": read_pairs,  # audio,text: a caption must be text, a file name may be bytes
    }
    for name, read in readers.items():
        path = tmp_path / name
        header = b"audio,text,caption,path\na.wav," if name.endswith(".csv") else b""
        if needle == "UTF-16" or (name == "pairs.csv" and data[0] == 0x89):
            header = b""  # a byte-order mark counts only first; a binary pairs file: NUL
        path.write_bytes(header + data)
        with pytest.raises(ClaptuneError) as info:
            read(str(path))
        message = str(info.value)
        assert name in message and "\n" not in message, message
        expected = needle.format(at + len(header))
        if name == "pairs.csv" and data[0] == 0x89:
            expected = "NUL byte at offset 8"
        assert expected in message, message


def test_configs_and_data_set_label_files_are_read_the_same_way(tiny_clap_dir, tmp_path, capsys):
    from claptune.data.tut2017 import _read_labels

    (tmp_path / "config.json").write_bytes(b'{"epochs": 1, "note": "caf\xe9"}')
    (tmp_path / "p.csv").write_text("audio,text\na.wav,rain\n")
    argv = ["train", "--model", str(tiny_clap_dir), "--pairs", str(tmp_path / "p.csv")]
    assert main([*argv, "--out", str(tmp_path / "o"), "--config", str(tmp_path / "config.json")])
    assert "config.json is not UTF-8 text: byte 0xe9 at offset 26" in one_line(capsys)
    (tmp_path / "meta.txt").write_bytes(b"audio/a.wav\tcaf\xe9\n")
    with pytest.raises(ClaptuneError, match="meta.txt is not UTF-8 text: byte 0xe9 at offset"):
        _read_labels(tmp_path)


def test_encoding_decodes_and_a_byte_order_mark_is_stripped(tmp_path):
    from claptune.audio import find_audio
    from claptune.curation import class_names_from
    from claptune.data.captioned import read_captions
    from claptune.textfiles import default_encoding

    (tmp_path / "classes.txt").write_bytes(LATIN1)
    with default_encoding("latin-1"):
        assert class_names_from(str(tmp_path / "classes.txt")) == ["caf\xe9 au lait", "rain"]
    with pytest.raises(ClaptuneError, match="unknown text encoding 'nope'"):
        with default_encoding("nope"):
            pass
    (tmp_path / "captions.csv").write_bytes(b"\xef\xbb\xbfcaption,path\nrain falling,a.wav\n")
    assert read_captions(tmp_path / "captions.csv") == ["rain falling"]
    write_tone(tmp_path / "a.wav", 440, seconds=0.1)
    (tmp_path / "list.txt").write_bytes(b"\xef\xbb\xbfa.wav\n")
    assert find_audio([tmp_path / "list.txt"]) == [tmp_path / "a.wav"]


def test_an_audio_list_may_hold_file_names_that_are_not_utf8(tmp_path):
    from claptune.audio import find_audio

    if sys.platform in ("win32", "darwin"):
        pytest.skip("this file system stores names as Unicode")
    write_tone(tmp_path / "a.wav", 440, seconds=0.1)
    shutil.copyfile(tmp_path / "a.wav", os.fsencode(tmp_path) + b"/caf\xe9.wav")
    (tmp_path / "list.txt").write_bytes(b"a.wav\ncaf\xe9.wav\n")  # as `ls > list.txt` writes it
    found = find_audio([tmp_path / "list.txt"])
    assert [os.fsencode(p.name) for p in found] == [b"a.wav", b"caf\xe9.wav"]
    (tmp_path / "list.txt").write_bytes(b"a.wav\nno\xe9.wav\n")  # no such file: latin-1 text
    with pytest.raises(ClaptuneError, match=r"list.txt is not UTF-8 text: byte 0xe9 at offset 8"):
        find_audio([tmp_path / "list.txt"])


def test_embed_text_in_latin1_is_one_line_and_encoding_reads_it(tiny_clap_dir, tmp_path, capsys):
    (tmp_path / "captions.txt").write_bytes(LATIN1)
    argv = ["embed", "--model", str(tiny_clap_dir), "--text", str(tmp_path / "captions.txt")]
    argv += ["--out", str(tmp_path / "store"), "--no-progress"]
    assert main(argv) == 2
    line = one_line(capsys)
    assert "captions.txt is not UTF-8 text: byte 0xe9 at offset 3" in line
    assert main([*argv, "--encoding", "latin-1"]) == 0
    assert load_store(tmp_path / "store").ids == ["caf\xe9 au lait", "rain"]


# -- damaged caches and stores -------------------------------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickled_npz(path: Path, names: tuple[str, ...]) -> None:
    np.savez(path, **{n: np.array([object()], dtype=object) for n in names})


@pytest.mark.parametrize("damage", ["truncated", "pickled", "wrong"])
def test_a_damaged_feature_cache_part_is_set_aside_and_recomputed(tmp_path, caplog, damage):
    from claptune.features import FeatureStore
    from test_improve import _SplitToy

    toy = _SplitToy.build().eval()
    clips = [write_tone(tmp_path / f"c{i}.wav", 300 + 100 * i, 0.3, rate=8000) for i in range(2)]
    first = FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False)
    first.add_clips(clips)
    want = first.embed_audio(toy, clips)
    (part,) = (tmp_path / "cache").glob("features/*/part-*.npz")
    if damage == "truncated":
        _truncate(part)
    elif damage == "pickled":
        _pickled_npz(part, ("item_keys", "n_windows", "digests", "features"))
    else:
        with np.load(part) as npz:
            arrays = dict(npz)
        np.savez(part, **{**arrays, "features": arrays["features"][:1]})  # rows lost
    with caplog.at_level("WARNING", logger="claptune"):
        store = FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and part.name in warned[0] and "\n" not in warned[0], warned
    assert part.with_name(part.name + ".damaged").exists()
    store.add_clips(clips)
    np.testing.assert_allclose(store.embed_audio(toy, clips), want, atol=1e-6)
    again = FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False)  # rewritten whole
    calls = toy.feature_calls
    again.add_clips(clips)
    assert toy.feature_calls == calls


@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_a_damaged_sharded_store_is_one_line_and_embed_recomputes_it(
    model,  # noqa: F811
    tmp_path,
    caplog,
    damage,
):
    import io
    import tarfile

    from claptune.embed import ShardedStore, embed_to_sharded_store

    texts = ["rain", "a dog", "wind in trees", "a bell"]
    out = embed_to_sharded_store(model, texts, tmp_path, kind="text", chunk_size=2, progress=False)
    want = ShardedStore.open(out).load()
    unit = sorted(out.glob("shards/*/*.tar"))[1]
    if damage == "truncated":
        _truncate(unit)
    else:  # a vector replaced by a pickled object array
        with tarfile.open(unit) as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        evil = io.BytesIO()
        np.save(evil, np.array([object()], dtype=object), allow_pickle=True)
        with tarfile.open(unit, "w") as tar:
            for member, data in members:
                data = evil.getvalue() if member.name.endswith("emb.npy") else data
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ClaptuneError) as info:
        ShardedStore.open(out).load()
    message = str(info.value)
    assert "\n" not in message and unit.name in message and "rerun claptune embed" in message
    with caplog.at_level("WARNING", logger="claptune"):
        embed_to_sharded_store(model, texts, out, kind="text", chunk_size=2, progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and unit.name in warned[0], warned
    got = ShardedStore.open(out).load()
    assert got.ids == want.ids
    np.testing.assert_allclose(got.embeddings, want.embeddings, atol=1e-6)


def test_temporaries_of_killed_writers_are_removed_on_the_next_run(model, tmp_path):  # noqa: F811
    import subprocess

    from claptune.atomic import atomic_file

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    embed_to_store(model, ["rain"], tmp_path, kind="text", progress=False)
    (cache,) = tmp_path.glob("cache/*/")
    leftovers = [
        tmp_path / f".embeddings-0123456789abcdef.npy.pid{pid}.x1.tmp",
        cache / f".part-r0-w-000001.npz.pid{pid}.x2.tmp",
    ]
    alive = cache / f".part-r0-w-000002.npz.pid{os.getpid()}.x3.tmp"  # a live writer's
    for path in [*leftovers, alive]:
        path.write_bytes(b"x" * 100)
    embed_to_store(model, ["wind"], tmp_path, kind="text", progress=False)
    assert not any(p.exists() for p in leftovers) and alive.exists()
    with pytest.raises(OSError), atomic_file(tmp_path / "x.bin") as fh:
        fh.write(b"abc")
        raise OSError(28, "No space left on device")
    assert not list(tmp_path.glob(".x.bin*")) and not (tmp_path / "x.bin").exists()


# -- model folders: configs, tokenizers, sizes ----------------------------------------------------
def _copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_msclap_config_and_tokenizer_problems_are_one_line(tmp_path):
    from claptune.models import load_model
    from claptune.models.msclap import CONFIG_FILE
    from test_msclap import _tiny_text_module, build

    text_dir = tmp_path / "bert"
    _tiny_text_module().make_tiny_text_model("bert", text_dir)
    saved = build(text_dir).save(tmp_path / "ok")
    cases = {
        "truncated": lambda text: text[:40],
        "unknown key": lambda text: text.replace("{", '{"nope": 1, ', 1),
        "bad value": lambda text: text.replace('"audio_encoder": "cnn14"', '"audio_encoder": 3'),
        "absurd size": lambda text: text.replace(
            '"num_hidden_layers": 2', '"num_hidden_layers": 100000000'
        ),
    }
    for name, damage in cases.items():
        folder = _copy_folder(saved, tmp_path / name.replace(" ", "-"))
        text = (folder / CONFIG_FILE).read_text()
        assert damage(text) != text, name
        (folder / CONFIG_FILE).write_text(damage(text))
        with pytest.raises(ClaptuneError) as info:
            load_model(str(folder))
        message = str(info.value)
        assert "\n" not in message and CONFIG_FILE in message, (name, message)
    no_tokenizer = _copy_folder(saved, tmp_path / "no-tokenizer")
    for path in no_tokenizer.iterdir():
        if path.name.startswith(("tokenizer", "vocab", "special_tokens")):
            path.unlink()
    with pytest.raises(ClaptuneError, match="tokeni[sz]") as info:
        load_model(str(no_tokenizer))
    assert "\n" not in str(info.value)


def test_a_folder_without_tokenizer_files_is_refused(tiny_clap_dir, tmp_path, capsys):
    folder = _copy_folder(tiny_clap_dir, tmp_path / "model")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    (tmp_path / "captions.txt").write_text("a dog barking\nrain\n")
    argv = ["embed", "--model", str(folder), "--text", str(tmp_path / "captions.txt")]
    assert main([*argv, "--out", str(tmp_path / "store"), "--no-progress"]) == 2
    # refused when the folder loads, naming what is missing (models/hf_clap.py)
    line = one_line(capsys)
    assert "no processor (tokenizer files missing)" in line, line
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_an_absurd_config_is_refused_before_anything_is_built(tiny_clap_dir, tmp_path, capsys):
    import json
    import time

    folder = _copy_folder(tiny_clap_dir, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 100_000
    config["text_config"]["hidden_size"] = 4096
    (folder / "config.json").write_text(json.dumps(config))
    start = time.perf_counter()
    argv = ["embed", "--model", str(folder), "--text", str(tmp_path / "t.txt")]
    (tmp_path / "t.txt").write_text("rain\n")
    assert main([*argv, "--out", str(tmp_path / "store"), "--no-progress"]) == 2
    line = one_line(capsys)
    assert "config.json" in line and "billion parameters" in line, line
    assert time.perf_counter() - start < 30


def test_a_config_larger_than_the_memory_limit_is_refused(tiny_clap_dir, monkeypatch):
    from claptune.models import load_model

    monkeypatch.setenv("CLAPTUNE_MAX_MODEL_BYTES", "100000")  # the tiny model is ~1 MB
    with pytest.raises(ClaptuneError, match="more than \\$CLAPTUNE_MAX_MODEL_BYTES"):
        load_model(str(tiny_clap_dir))


# -- network errors ------------------------------------------------------------------------------
def test_push_to_an_unreachable_endpoint_is_one_line_without_the_token(
    tiny_clap_dir, tmp_path, monkeypatch, capsys
):
    import huggingface_hub.constants

    from claptune.models import load_model

    folder = load_model(str(tiny_clap_dir)).save(tmp_path / "model")
    capsys.readouterr()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert main(["push", str(folder), "--repo-id", "someone/x"]) == 2
    line = one_line(capsys)
    assert "cannot push" in line and "hf_abcdefghijklmnop" not in line, line


def test_a_download_with_a_malformed_or_unreachable_url_is_one_line(tmp_path):
    from claptune.download import download

    for url in ("http://127.0.0.1:9/x.zip", "not a url at all"):
        with pytest.raises(ClaptuneError, match="cannot download") as info:
            download(url, tmp_path / "x.zip", timeout=5, progress=False)
        assert "\n" not in str(info.value)


# -- one run per output folder -------------------------------------------------------------------
def test_a_finished_run_folder_needs_overwrite_which_removes_only_that_run(tmp_path):
    from claptune.runfolder import hold_run_folder

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # the user's, there before any run
    with hold_run_folder(out, "adapt"):
        (out / "report.json").write_text("{}")
        (out / "model").mkdir()
        (out / "pairs_split2.csv").write_text("a,b\n")
    with pytest.raises(ClaptuneError, match="finished claptune adapt.*--overwrite"):
        with hold_run_folder(out, "adapt"):
            pass
    with hold_run_folder(out, "adapt", overwrite=True):
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["notes.txt"]
        (out / "report.json").write_text("{}")
    with pytest.raises(ClaptuneError), hold_run_folder(out, "improve"):
        pass
    # a run that fails leaves no record: the rerun needs no flag
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError), hold_run_folder(killed, "improve"):
        (killed / "partial.png").write_bytes(b"x")
        raise RuntimeError("killed")
    with hold_run_folder(killed, "improve"):
        pass
    # a run that fails before writing anything leaves no empty folder it made
    empty = tmp_path / "empty"
    with pytest.raises(ClaptuneError), hold_run_folder(empty, "ablate"):
        raise ClaptuneError("--root nosuchdir: not found")
    assert not empty.exists()


def test_a_failed_or_killed_overwrite_gives_the_earlier_run_back(tmp_path):
    """--overwrite replaces a finished run only when the new run finishes: a run that fails
    (a typo found after the folder was taken, Ctrl-C) or is killed leaves the earlier run."""
    from claptune.runfolder import REPLACED_DIR, hold_run_folder

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with hold_run_folder(out, "ablate"):
        (out / "ablation.json").write_text('{"old": 1}')
        (out / "scores").mkdir()
        (out / "scores" / "a.npz").write_bytes(b"old")

    def state():
        return {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".claptune-lock"
        }

    kept = state()
    for error in (ClaptuneError("unknown loss 'hrad'"), KeyboardInterrupt()):
        with pytest.raises(type(error)), hold_run_folder(out, "ablate", overwrite=True):
            assert not (out / "ablation.json").exists()  # set aside while the new run goes
            (out / "ablation.json").write_text("partial")
            (out / "new.png").write_bytes(b"x")
            raise error
        assert state() == kept  # the earlier run back, the failed run's files gone
    # a replacement that finishes removes the earlier run; its record lists what it wrote
    with hold_run_folder(out, "ablate", overwrite=True):
        (out / "ablation.json").write_text("new")
    assert (out / "ablation.json").read_text() == "new" and not (out / "scores").exists()
    assert (out / "notes.txt").read_text() == "mine" and not (out / REPLACED_DIR).exists()
    # killed outright while replacing: the next run into the folder puts the earlier one back
    # (and, being finished, it still needs --overwrite)
    out2 = tmp_path / "killed"
    out2.mkdir()
    with hold_run_folder(out2, "adapt"):
        (out2 / "report.json").write_text("old")
    aside = out2 / REPLACED_DIR
    aside.mkdir()  # what a killed --overwrite run leaves: the earlier run aside, a partial
    for name in ("report.json", ".claptune-run.json"):
        (out2 / name).rename(aside / name)
    (out2 / "report.json").write_text("partial")
    with pytest.raises(ClaptuneError, match="finished claptune adapt"):
        with hold_run_folder(out2, "adapt"):
            pass
    assert (out2 / "report.json").read_text() == "old" and not aside.exists()
    # a folder holding an ablation.json of an earlier version counts as finished
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "ablation.json").write_text("{}")
    with pytest.raises(ClaptuneError, match="ablation.json.*--overwrite"):
        with hold_run_folder(legacy, "ablate"):
            pass


def test_a_run_folder_held_by_a_live_run_is_refused_in_one_line(tmp_path, capsys):
    from claptune.runfolder import hold_run_folder

    out = tmp_path / "run"
    with hold_run_folder(out, "improve"):
        argv = ["adapt", "--audio", str(tmp_path), "--classes", "a,b", "--out", str(out)]
        assert main(argv) == 2
        line = one_line(capsys)
        assert "in use by a run still going" in line and "claptune improve" in line, line


def test_adapt_with_non_utf8_names_and_a_latin1_class_list_then_a_second_run(tmp_path, capsys):
    from test_adapt import _argv

    if sys.platform in ("win32", "darwin"):
        pytest.skip("this file system stores names as Unicode")
    audio = tmp_path / "clips"
    raw = os.fsencode(audio)
    for i, freq in enumerate((300, 320, 900, 950, 2500, 2600)):
        write_tone(tmp_path / "src.wav", freq, seconds=0.5, noise=0.01, seed=i)
        os.makedirs(raw, exist_ok=True)
        shutil.copyfile(os.fsencode(tmp_path / "src.wav"), raw + b"/caf\xe9-%d.wav" % i)
    with open(raw + b"/worse\xff.wav", "wb") as fh:
        fh.write(b"not audio\n" * 10)
    classes = tmp_path / "classes.txt"
    classes.write_bytes("low hum\nmid b\xe9ep\nhigh whistle\n".encode("latin-1"))
    corpus = write_tiny_corpus(tmp_path / "corpus")
    teacher = _teacher(tmp_path)
    out = tmp_path / "run"
    argv = _argv(teacher, audio, classes, corpus, out, "--no-save-model")
    assert main(argv) == 2  # the class list is latin-1
    assert "classes.txt is not UTF-8 text: byte 0xe9 at offset 13" in one_line(capsys)
    assert main([*argv, "--encoding", "latin-1"]) == 0, capsys.readouterr().err
    for name in ("report.md", "report.html", "report.json"):
        (out / name).read_bytes().decode("utf-8")  # written, and valid UTF-8
    assert "caf\\xe9-" in (out / "report.md").read_text() + (out / "report.html").read_text()
    capsys.readouterr()
    assert main([*argv, "--encoding", "latin-1"]) == 2  # finished: needs --overwrite
    assert "--overwrite" in one_line(capsys)


def _teacher(tmp_path: Path) -> tuple[Path, Path]:
    import torch

    from claptune.models.default import DefaultModel

    torch.manual_seed(0)
    DefaultModel(metadata={"heldout_ids": ["audio/0.wav"]}).save(tmp_path / "teacher")
    return tmp_path / "teacher", tmp_path / "cache"


# -- full disks and killed runs ------------------------------------------------------------------
def test_a_full_disk_is_one_line_keeps_what_was_written_and_the_rerun_completes(
    tiny_clap_dir, tmp_path, monkeypatch, capsys
):
    real = np.savez
    calls = []

    def fills_the_disk(fh, **arrays):
        calls.append(1)
        if len(calls) == 3:
            fh.write(b"PK\x03\x04 half a part")
            raise OSError(28, "No space left on device")
        real(fh, **arrays)

    texts = ["rain", "a dog", "wind", "a bell"]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "store"
    argv = ["embed", "--model", str(tiny_clap_dir), "--text", str(tmp_path / "t.txt")]
    argv += ["--out", str(out), "--chunk-size", "1", "--no-progress"]
    monkeypatch.setattr(np, "savez", fills_the_disk)
    assert main(argv) == 2
    assert "no space left on the device" in one_line(capsys)
    assert not list(out.rglob("*.tmp")) and len(list(out.glob("cache/*/part-*.npz"))) == 2
    monkeypatch.setattr(np, "savez", real)
    assert main(argv) == 0
    assert load_store(out).ids == texts


def test_scratch_folders_of_killed_runs_are_removed(tmp_path):
    import subprocess

    from claptune.atomic import scratch_dir

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = tmp_path / f"claptune-fit-pid{int(dead.stdout)}-abc"
    (left / "checkpoint").mkdir(parents=True)
    mine = scratch_dir("claptune-fit-", tmp_path)
    other = scratch_dir("claptune-fit-", tmp_path)  # this process lives: both stay
    assert not left.exists() and mine.is_dir() and other.is_dir()


# -- --on-error skip, for errors found while decoding too ----------------------------------------
def test_train_on_error_skip_covers_clips_damaged_past_their_header(
    tiny_clap_dir, tmp_path, capsys
):
    import json

    import soundfile as sf

    from test_bad_inputs import _pairs_csv, _train

    nan = np.full(8000, 0.1, np.float32)
    nan[4000:4010] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")  # a good header, NaN samples
    write_tone(tmp_path / "full.wav", 440, seconds=2.0)
    wave, rate = sf.read(tmp_path / "full.wav", dtype="float32")
    sf.write(tmp_path / "cut.flac", wave, rate)
    data = (tmp_path / "cut.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) * 2 // 3])  # cut mid-stream
    pairs = _pairs_csv(tmp_path, ["nan.wav,a clip with holes", "cut.flac,a cut recording"])
    out = tmp_path / "run"
    assert main(_train(tiny_clap_dir, pairs, out, "--on-error", "skip")) == 0
    skipped = json.loads((out / "skipped_clips.json").read_text())
    assert sorted(Path(s["path"]).name for s in skipped) == ["cut.flac", "nan.wav"]
    assert "Traceback" not in capsys.readouterr().err


# -- memory bounded on long recordings -----------------------------------------------------------
def test_long_files_are_streamed_into_the_feature_store_with_the_same_windows(
    tmp_path, monkeypatch
):
    import claptune.features as features
    from claptune.embed import encode_audio
    from claptune.features import FeatureStore
    from test_improve import _SplitToy

    toy = _SplitToy.build().eval()
    clips = [write_tone(tmp_path / "long.wav", 330, 3.3, rate=8000, noise=0.1)]
    clips.append(write_tone(tmp_path / "short.wav", 500, 0.3, rate=8000))
    loaded = []
    real_load = features.load_audio
    monkeypatch.setattr(features, "LONG_WINDOWS", 2)  # 3.3 s of 0.5 s windows is "long"
    monkeypatch.setattr(features, "load_audio", lambda p, sr: loaded.append(p) or real_load(p, sr))
    store = FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False)
    kept, failed = store.add_clips(clips)
    assert kept.tolist() == [0, 1] and not failed
    assert loaded == [str(clips[1])]  # the long one was never loaded whole
    want = encode_audio(toy, clips, progress=False).embeddings
    np.testing.assert_allclose(store.embed_audio(toy, clips), want, atol=1e-6)


def test_push_publishes_run_configs_without_local_paths(tiny_clap_dir, tmp_path, monkeypatch):
    import json

    import huggingface_hub.constants

    from claptune.hub import push_folder
    from claptune.models import load_model
    from hub_standin import HubStandIn

    folder = load_model(str(tiny_clap_dir)).save(tmp_path / "model")
    config = {"model": "default", "cache_dir": "/home/someone/.cache/claptune", "seed": 0}
    config["audio"] = ["/home/someone/recordings", "relative/clips"]
    (folder / "adapt_config.json").write_text(json.dumps(config))
    (folder / ".hidden").write_text("x")
    with HubStandIn() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        push_folder(folder, "someone/tiny", token="hf_test")
    uploaded = hub.repos["someone/tiny"]["branches"]["main"]
    published = json.loads(uploaded["adapt_config.json"])
    assert published == {
        **config,
        "cache_dir": "<local>/claptune",
        "audio": ["<local>/recordings", "relative/clips"],
    }
    assert ".hidden" not in uploaded
    assert uploaded["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_the_parameter_estimate_is_close_to_the_count(tiny_clap_dir):
    import json

    import torch
    from transformers import ClapConfig, ClapModel

    from claptune.models.checkpoints import estimate_parameters

    for layers in (2, 40):
        config = json.loads((tiny_clap_dir / "config.json").read_text())
        config["text_config"]["num_hidden_layers"] = layers
        clap = ClapConfig.from_dict(config)
        with torch.device("meta"):
            count = sum(p.numel() for p in ClapModel(clap).parameters())
        assert abs(estimate_parameters(clap.to_dict()) - count) < 0.02 * count, layers


def test_a_full_disk_under_the_feature_cache_and_a_checkpoint_leaves_nothing_partial(
    tmp_path, monkeypatch
):
    import torch

    import claptune.train.checkpoint as checkpoint
    from claptune.errors import disk_full
    from claptune.features import FeatureStore
    from claptune.train import TrainConfig
    from test_improve import _SplitToy

    toy = _SplitToy.build().eval()
    clips = [write_tone(tmp_path / f"c{i}.wav", 300 + 50 * i, 0.3, rate=8000) for i in range(2)]
    real = np.savez

    def full(fh, **arrays):
        fh.write(b"PK half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as info:
        FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False).add_clips(clips)
    assert disk_full(info.value) and not list((tmp_path / "cache").rglob("*.tmp"))
    monkeypatch.setattr(np, "savez", real)
    store = FeatureStore(toy, cache_dir=tmp_path / "cache", progress=False)
    assert store.add_clips(clips)[0].tolist() == [0, 1]  # the rerun completes

    optimizer = torch.optim.SGD(toy.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    config = TrainConfig()
    first = checkpoint.save_checkpoint(tmp_path, toy, optimizer, scheduler, {"step": 1}, config)

    def safetensors_full(*args, **kwargs):
        raise RuntimeError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoint, "save_file", safetensors_full)
    with pytest.raises(RuntimeError) as info:
        checkpoint.save_checkpoint(tmp_path, toy, optimizer, scheduler, {"step": 2}, config)
    assert disk_full(info.value) and "no space left" in disk_full(info.value)
    assert not (tmp_path / f"{first.name}.tmp").exists()
    assert checkpoint.find_checkpoint(tmp_path) == first  # the previous one stays whole


def test_sigterm_unwinds_like_ctrl_c_and_gives_the_earlier_run_back(tmp_path):
    """``timeout``, ``kill`` and batch schedulers stop a job with SIGTERM: the command exits
    with 143 in one line, and a failed --overwrite puts the earlier run back as on Ctrl-C."""
    import subprocess
    import sys

    out = tmp_path / "run"
    code = (
        "import os, signal, sys, time\n"
        "from pathlib import Path\n"
        "from claptune.runfolder import hold_run_folder\n"
        f"out = Path({str(out)!r})\n"
        "with hold_run_folder(out, 'adapt'):\n"
        "    (out / 'report.json').write_text('old')\n"
        "import claptune.cli.models as models\n"
        "def run(args):\n"
        "    with hold_run_folder(out, 'adapt', overwrite=True):\n"
        "        (out / 'report.json').write_text('partial')\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "    return 0\n"
        "models.run = run\n"
        "from claptune.cli import main\n"
        "sys.exit(main(['models']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 143, proc.stderr
    assert "stopped by signal 15" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "report.json").read_text() == "old"


def test_a_killed_run_completed_later_records_all_it_wrote_and_user_files_are_not_written_over(
    tmp_path,
):
    """A run killed outright leaves a 'running' record with the entries that were there before
    it: the run that completes the folder records everything the two wrote, so a later failed
    --overwrite puts back a whole run, not a mix. A file the command would write over that no
    claptune run wrote (the user's own predictions.csv) is refused without --overwrite."""
    import json

    from claptune.runfolder import RECORD_FILE, hold_run_folder

    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # killed outright: simulated by a record left 'running' and the files it wrote
    with pytest.raises(RuntimeError), hold_run_folder(out, "adapt"):
        (out / "model").mkdir()
        (out / "predictions.csv").write_text("old labels")
        raise RuntimeError("killed")
    assert json.loads((out / RECORD_FILE).read_text())["state"] == "running"
    with hold_run_folder(out, "adapt"):  # completes it without a flag
        (out / "report.json").write_text("old")
    written = json.loads((out / RECORD_FILE).read_text())["written"]
    assert written == ["model", "predictions.csv", "report.json"]
    # a replacement that fails gives back the whole earlier run, nothing of its own
    with pytest.raises(ClaptuneError), hold_run_folder(out, "adapt", overwrite=True):
        (out / "predictions.csv").write_text("new labels")
        raise ClaptuneError("--eval: not found")
    assert (out / "predictions.csv").read_text() == "old labels"
    assert (out / "report.json").read_text() == "old" and (out / "notes.txt").exists()
    # the user's own file of an output's name, in a folder no run has used
    user = tmp_path / "user"
    user.mkdir()
    (user / "predictions.csv").write_text("my labels")
    with pytest.raises(ClaptuneError, match="predictions.csv, which this run would write over"):
        with hold_run_folder(user, "zeroshot"):
            pass
    assert (user / "predictions.csv").read_text() == "my labels"
    with hold_run_folder(user, "zeroshot", overwrite=True):
        assert not (user / "predictions.csv").exists()  # set aside, gone when the run ends
        (user / "zeroshot.json").write_text("{}")
    assert not (user / "predictions.csv").exists()
