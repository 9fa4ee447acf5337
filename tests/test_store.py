"""The embedding store under concurrent writers and damage: two runs into one folder share the
work and lose nothing, a damaged part is set aside and recomputed, a part or view holding
pickled objects is refused in one line without being unpickled."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import claptune.embed.plain as embed
from claptune.cli import main
from claptune.embed import embed_to_store, encode_text, load_store, store_key
from claptune.errors import ClaptuneError
from test_embed import clips, model  # noqa: F401 - fixtures shared with test_embed

CLI = "import sys; from claptune.cli import main; sys.exit(main(sys.argv[1:]))"


def _part_keys(out):
    keys = []
    for path in out.glob("cache/*/part-*.npz"):
        with np.load(path) as part:
            keys += part["keys"].tolist() + part["failed_keys"].tolist()
    return keys


def test_two_runs_into_one_store_share_the_work_and_lose_nothing(
    model,  # noqa: F811
    tiny_clap_dir,  # noqa: F811
    tmp_path,
):
    words = [f"sound number {i}" for i in range(36)]
    a, b = words[:24], words[12:]  # 12 items in common
    (tmp_path / "a.txt").write_text("\n".join(a) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(b) + "\n")
    out = tmp_path / "store"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLI,
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--text",
                str(tmp_path / name),
                "--out",
                str(out),
                "--chunk-size",
                "1",
                "--no-progress",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("a.txt", "b.txt")
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]

    store = load_store(out, model)
    assert sorted(store.ids) == sorted(words)  # the view holds both runs' items
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_embedded"] == len(words) and manifest["failed"] == []
    reference = dict(zip(words, encode_text(model, words, progress=False), strict=True))
    for item, row in zip(store.ids, store.embeddings, strict=True):
        np.testing.assert_allclose(row, reference[item], atol=1e-6)
    for run in (a, b):  # each run's items read back in its order
        assert load_store(out, model, items=run).ids == run
    keys = _part_keys(out)
    assert sorted(keys) == sorted(set(keys)) and len(keys) == len(words)  # nothing twice
    assert not list(out.glob("cache/*/claims/*.json"))  # claims go with their writers


def test_sequential_runs_add_to_the_view(model, tmp_path):  # noqa: F811
    embed_to_store(model, ["rain", "wind"], tmp_path, kind="text", progress=False)
    embed_to_store(model, ["dog", "rain"], tmp_path, kind="text", progress=False)
    assert load_store(tmp_path).ids == ["wind", "dog", "rain"]
    sub = load_store(tmp_path, items=["rain", "wind", "rain"])
    assert sub.ids == ["rain", "wind", "rain"] and sub.manifest["n_items"] == 3
    np.testing.assert_allclose(
        sub.embeddings, encode_text(model, sub.ids, progress=False), atol=1e-6
    )
    with pytest.raises(ClaptuneError, match="lacks snow"):
        load_store(tmp_path, items=["snow"])


def test_a_dead_writers_claim_lapses(model, tmp_path):  # noqa: F811
    claims = tmp_path / "cache" / store_key(model, "text") / "claims"
    claims.mkdir(parents=True)
    texts = ["rain", "wind"]
    keys = [embed.item_key(t, "text") for t in texts]
    (claims / "dead-1-0.json").write_text(json.dumps(keys))  # nobody holds its lock
    embed_to_store(model, texts, tmp_path, kind="text", chunk_size=1, progress=False)
    assert load_store(tmp_path).ids == texts and not list(claims.iterdir())


def test_part_names_never_collide(model, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(embed.os, "getpid", lambda: 7)  # two writers in one pid namespace
    embed_to_store(model, ["a"], tmp_path, kind="text", progress=False)
    embed_to_store(model, ["b"], tmp_path, kind="text", progress=False)
    assert len({p.name for p in tmp_path.glob("cache/*/part-*.npz")}) == 2


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(b"PK\x03\x04" + bytes(64))


def _wrong_contents(path):
    np.savez(
        path,
        keys=np.array(["x"]),
        embeddings=np.zeros((2, 3), np.float32),
        failed_keys=np.array([], dtype=str),
        reasons=np.array([], dtype=str),
    )


@pytest.mark.parametrize("damage", [_truncate, _garbage, _wrong_contents])
def test_a_damaged_part_is_set_aside_and_recomputed(
    model,  # noqa: F811
    clips,  # noqa: F811
    tmp_path,
    caplog,  # noqa: F811
    monkeypatch,
    damage,
):
    items = [str(c) for c in clips[:4]]
    original = load_store(
        embed_to_store(model, items, tmp_path, chunk_size=1, progress=False)
    ).embeddings
    part = sorted(tmp_path.glob("cache/*/part-*.npz"))[1]
    with np.load(part) as npz:
        lost = npz["keys"].tolist()
    damage(part)
    encoded = []
    real = embed.encode_audio
    monkeypatch.setattr(
        embed, "encode_audio", lambda m, its, **kw: encoded.extend(its) or real(m, its, **kw)
    )
    with caplog.at_level(logging.WARNING, logger="claptune.embed"):
        store = load_store(embed_to_store(model, items, tmp_path, chunk_size=1, progress=False))
    assert store.ids == items
    np.testing.assert_allclose(store.embeddings, original, atol=1e-6)
    assert [embed.item_key(i, "audio") for i in encoded] == lost  # only the damaged part's items
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and part.name in warnings[0] and "\n" not in warnings[0]
    assert part.with_name(part.name + ".damaged").exists()


def test_parts_are_flushed_to_disk_before_they_appear(model, tmp_path, monkeypatch):  # noqa: F811
    synced = []
    real = os.fsync
    monkeypatch.setattr(embed.os, "fsync", lambda fd: synced.append(fd) or real(fd))
    embed_to_store(model, ["rain"], tmp_path, kind="text", progress=False)
    # part, embeddings.npy and manifest.json (identity.json too): each file and its folder
    assert len(synced) >= 6


def test_a_part_holding_pickled_objects_is_refused_unread(
    model,  # noqa: F811
    tiny_clap_dir,
    tmp_path,  # noqa: F811
    capsys,
):
    embed_to_store(model, ["rain"], tmp_path, kind="text", progress=False)
    evil = tmp_path / "cache" / store_key(model, "text") / "part-r0-evil-000001.npz"
    np.savez(
        evil,
        keys=np.array(["x"], dtype=object),
        embeddings=np.zeros((1, 4), np.float32),
        failed_keys=np.array([], dtype=str),
        reasons=np.array([], dtype=str),
    )
    (tmp_path / "t.txt").write_text("wind\n")
    args = [
        "embed",
        "--model",
        str(tiny_clap_dir),
        "--text",
        str(tmp_path / "t.txt"),
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(evil) in err and "pickled" in err


def test_a_view_holding_pickled_objects_is_refused_unread(model, tmp_path, capsys):  # noqa: F811
    embed_to_store(model, ["rain"], tmp_path, kind="text", progress=False)
    vectors = tmp_path / json.loads((tmp_path / "manifest.json").read_text())["embeddings"]
    np.save(vectors, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ClaptuneError, match="refusing to load .*embeddings-.*npy.*pickled"):
        load_store(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ClaptuneError, match="cannot read .*manifest.json"):
        load_store(tmp_path)


def test_ctrl_c_keeps_the_clips_finished_so_far(model, clips, tmp_path, monkeypatch):  # noqa: F811
    """Ctrl-C in the middle of a part: the clips finished before it are written as a part of
    their own, and the rerun embeds only the others, to the same vectors."""
    import claptune.embed.encode as encode

    real, calls = encode._forward_audio, []

    def interrupted(m, batch):
        calls.append(len(batch))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(m, batch)

    monkeypatch.setattr(encode, "_forward_audio", interrupted)
    out = tmp_path / "store"
    items = [str(c) for c in clips]
    with pytest.raises(KeyboardInterrupt):
        embed_to_store(model, items, out, batch_size=1, num_workers=0, progress=False)
    kept = _part_keys(out)
    assert 0 < len(kept) < len(items)  # some clips done (every window of them), not all
    monkeypatch.setattr(encode, "_forward_audio", real)
    store = load_store(embed_to_store(model, items, out, num_workers=0, progress=False))
    fresh = embed_to_store(model, items, tmp_path / "fresh", num_workers=0, progress=False)
    np.testing.assert_allclose(store.embeddings, load_store(fresh).embeddings, atol=1e-6)
    assert store.ids == load_store(fresh).ids
    assert len(_part_keys(out)) == len(items)  # the rerun added only the missing clips
