"""Webdataset shards: streamed embedding (either store layout), 2 ranks = 1, curation from a
sharded store = from the normal store, training from shards alone."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from claptune.cli import main
from claptune.data.shards import (
    ShardIndex,
    decode_audio_bytes,
    expand_shards,
    is_shard_spec,
    iter_samples,
    load_clip,
    shard_name,
    write_audio_shards,
)
from claptune.embed import ShardedStore, embed_shards_to_store, encode_audio, load_store
from claptune.errors import ClaptuneError

N_SHARDS, PER_SHARD = 3, 4


@pytest.fixture(scope="module")
def model(tiny_clap_dir):
    from claptune.models.hf_clap import HFClapModel

    return HFClapModel.load(tiny_clap_dir)


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory) -> tuple[str, list[np.ndarray]]:
    """3 shards x 4 captioned clips (tones and noise of 0.2-1.4 s at 16 kHz); the pattern and
    the waveforms as written."""
    folder = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    waves, samples = [], []
    for i in range(N_SHARDS * PER_SHARD):
        t = np.arange(int((0.2 + 0.1 * i) * 16000)) / 16000
        wave = (
            0.3 * np.sin(2 * np.pi * (200 + 60 * i) * t) + 0.05 * rng.standard_normal(len(t))
        ).astype(np.float32)
        waves.append(wave)
        samples.append((f"clip{i:03d}", wave, 16000, f"a sound number {i}"))
    write_audio_shards(str(folder / "%06d.tar"), samples, per_shard=PER_SHARD)
    return str(folder / "{000000..000002}.tar"), waves


def test_patterns_names_and_streamed_samples(shard_set):
    pattern, waves = shard_set
    urls = expand_shards(pattern)
    assert len(urls) == N_SHARDS and is_shard_spec(pattern) and not is_shard_spec("a.flac")
    assert shard_name("s3://bucket/laion/000042.tar") == "000042"
    assert shard_name("pipe:curl -s https://x.org/a/000001.tar.gz") == "000001"
    both = [[s.id for s in iter_samples(urls, rank=r, world_size=2)] for r in range(2)]
    single = [s.id for s in iter_samples(urls)]
    assert sorted(both[0] + both[1]) == sorted(single) and not set(both[0]) & set(both[1])
    assert single[5] == "000001/clip005"
    sample = next(iter_samples(urls))
    assert sample.caption == "a sound number 0"
    np.testing.assert_allclose(
        decode_audio_bytes(sample.audio, sample.id, 16000), waves[0], atol=1e-4
    )  # FLAC's 16 bits
    index = ShardIndex(pattern)
    np.testing.assert_allclose(load_clip(index.ref("000002/clip009"), 16000), waves[9], atol=1e-4)


def test_dataloader_workers_and_ranks_split_the_shards(shard_set):
    import torch

    from claptune.data.shards import ShardSamples

    urls = expand_shards(shard_set[0])
    seen = []
    for rank in range(2):
        loader = torch.utils.data.DataLoader(
            ShardSamples(urls, 16000, rank=rank, world_size=2), batch_size=None, num_workers=2
        )
        seen += [sid for sid, _ in loader]
    assert sorted(seen) == sorted(s.id for s in iter_samples(urls))


def test_colliding_shard_names_are_refused(tmp_path, shard_set):
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "000000.tar"
    other.write_bytes(Path(expand_shards(shard_set[0])[0]).read_bytes())
    with pytest.raises(ClaptuneError, match="same name"):
        expand_shards([shard_set[0], str(other)])


def test_caption_from_a_json_field(tmp_path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "000000.tar")) as sink:
        sink.write(
            {"__key__": "x", "json": {"meta": {"caption": ["rain on a roof"]}}, "txt": "other"}
        )
    urls = [str(tmp_path / "000000.tar")]
    assert next(iter_samples(urls)).caption == "other"
    assert next(iter_samples(urls, caption_key="meta.caption")).caption == "rain on a roof"


def test_embed_from_shards_equals_the_waveforms(model, shard_set, tmp_path):
    pattern, _ = shard_set
    store = load_store(
        embed_shards_to_store(model, pattern, tmp_path / "s", chunk_size=5, progress=False)
    )
    assert store.ids == [f"{i // PER_SHARD:06d}/clip{i:03d}" for i in range(N_SHARDS * PER_SHARD)]
    decoded = [load_clip(ShardIndex(pattern).ref(i), model.sample_rate) for i in store.ids]
    ref = encode_audio(model, decoded, progress=False).embeddings
    np.testing.assert_allclose(store.embeddings, ref, atol=1e-6)
    # a rerun computes nothing: every item is found in the cache under its shard/key id
    parts = sorted(tmp_path.glob("s/cache/*/part-*.npz"))
    embed_shards_to_store(model, pattern, tmp_path / "s", progress=False)
    assert sorted(tmp_path.glob("s/cache/*/part-*.npz")) == parts
    # the sharded layout holds the same vectors
    sharded = ShardedStore.open(
        embed_shards_to_store(
            model, pattern, tmp_path / "sh", store_format="shards", progress=False
        )
    )
    got = sharded.load()
    assert got.ids == store.ids and len(sharded) == len(store.ids)
    np.testing.assert_allclose(got.embeddings, store.embeddings, atol=1e-6)
    blocks = list(sharded.blocks(block_size=5))
    assert [len(i) for i, _ in blocks] == [5, 5, 2]


def _run_two_ranks(args: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from claptune.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()[-2000:]


@pytest.mark.parametrize("layout", ["npz", "shards"])
def test_two_ranks_equal_one(tiny_clap_dir, shard_set, tmp_path, layout):
    pattern, _ = shard_set
    common = [
        "embed",
        "--model",
        str(tiny_clap_dir),
        "--audio",
        pattern,
        "--no-progress",
        "--chunk-size",
        "3",
        "--store-format",
        layout,
    ]
    _run_two_ranks([*common, "--out", str(tmp_path / "two")])
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    read = load_store if layout == "npz" else (lambda d: ShardedStore.open(d).load())
    two, one = read(tmp_path / "two"), read(tmp_path / "one")
    assert two.ids == one.ids and len(one.ids) == N_SHARDS * PER_SHARD
    np.testing.assert_allclose(two.embeddings, one.embeddings, atol=1e-6)
    if layout == "npz":  # both ranks did part of the work
        names = {p.name[:7] for p in (tmp_path / "two").glob("cache/*/part-*.npz")}
        assert {"part-r0", "part-r1"} <= names


def test_curate_from_a_sharded_store_equals_the_normal_store(
    tiny_clap_dir, shard_set, tmp_path, monkeypatch
):
    pattern, _ = shard_set
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(f"a sound number {i}" for i in range(7)) + "\n")
    base = ["--model", str(tiny_clap_dir), "--no-progress"]
    # chunks of one shard: both layouts batch the same clips together, so hold the same bits
    chunk = ["--chunk-size", str(PER_SHARD)]
    assert main(["embed", *base, *chunk, "--audio", pattern, "--out", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "embed",
                *base,
                *chunk,
                "--audio",
                pattern,
                "--out",
                str(tmp_path / "as"),
                "--store-format",
                "shards",
            ]
        )
        == 0
    )
    assert main(["embed", *base, "--text", str(captions), "--out", str(tmp_path / "t")]) == 0
    # small blocks so that the streamed search really runs block by block
    monkeypatch.setattr(
        ShardedStore,
        "blocks",
        lambda self, block_size=5, _f=ShardedStore.blocks: _f(self, block_size),
    )
    for extra in (["--threshold", "q0.9"], ["--top-k", "2"]):
        outs = []
        for store in ("a", "as"):
            out = tmp_path / f"du-{store}-{extra[0]}"
            assert (
                main(
                    [
                        "curate",
                        "--method",
                        "du",
                        "--audio",
                        str(tmp_path / store),
                        "--text",
                        str(tmp_path / "t"),
                        *extra,
                        "--out",
                        str(out),
                        "--no-progress",
                    ]
                )
                == 0
            )
            outs.append((out / "pairs.csv").read_text())
        assert outs[0] == outs[1] and len(outs[0].splitlines()) > 1
    # shards given directly to du are cached as a sharded store and streamed the same way
    out = tmp_path / "du-direct"
    assert (
        main(
            [
                "curate",
                "--method",
                "du",
                "--model",
                str(tiny_clap_dir),
                "--audio",
                pattern,
                "--text",
                str(tmp_path / "t"),
                "--top-k",
                "2",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--quiet",
            ]
        )
        == 0
    )
    manifest = tmp_path / "cache" / "embeddings" / "audio" / "manifest.json"
    assert manifest.read_text().count('"shards"') == 2
    direct = [r.split(",")[:2] for r in (out / "pairs.csv").read_text().splitlines()]
    assert direct == [r.split(",")[:2] for r in outs[0].splitlines()]


def test_embed_curate_train_from_shards_alone(tiny_clap_dir, shard_set, tmp_path):
    pattern, _ = shard_set
    out = tmp_path / "pseudo"
    assert (
        main(
            [
                "curate",
                "--method",
                "pseudo",
                "--model",
                str(tiny_clap_dir),
                "--target-audio",
                pattern,
                "--classes",
                "tone,noise,hum",
                "--threshold",
                "q0.0",
                "--max-per-class",
                "0",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    with (out / "pairs.csv").open() as fh:
        audio = [row["audio"] for row in csv.DictReader(fh)]
    assert audio and all(a.startswith("00000") and "/clip" in a for a in audio)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_clap_dir),
                "--pairs",
                str(out / "pairs.csv"),
                "--shards",
                pattern,
                "--replay",
                pattern,
                "--out",
                str(run),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--num-workers",
                "0",
                "--quiet",
                "--device",
                "cpu",
                "--trainable",
                "projections",
            ]
        )
        == 0
    )
    assert (run / "model").is_dir()


def test_pair_ids_missing_from_the_shards_are_one_line_errors(
    tiny_clap_dir, shard_set, tmp_path, capsys
):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("audio,text\n000000/nope,a caption\n000000/clip000,b\n")
    code = main(
        [
            "train",
            "--model",
            str(tiny_clap_dir),
            "--pairs",
            str(pairs),
            "--shards",
            shard_set[0],
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "000000/nope" in err and "Traceback" not in err


def test_improve_with_a_corpus_of_shards(tiny_clap_dir, shard_set, tmp_path):
    import soundfile as sf

    target = tmp_path / "target"
    for name, freq in [("dog_bark", 300), ("rain", 900), ("siren", 2000)]:
        for i in range(3):
            t = np.arange(8000) / 16000
            (target / name).mkdir(parents=True, exist_ok=True)
            sf.write(
                target / name / f"{i}.wav",
                (0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t)).astype(np.float32),
                16000,
            )
    out = tmp_path / "run"
    assert (
        main(
            [
                "improve",
                "--model",
                str(tiny_clap_dir),
                "--target",
                "folder",
                "--root",
                str(target),
                "--corpus",
                shard_set[0],
                "--corpus-holdout",
                "0.25",
                "--out",
                str(out),
                "--splits",
                "1",
                "--seeds",
                "1",
                "--methods",
                "ds",
                "--threshold",
                "ds=q0.5",
                "--train",
                "epochs=1",
                "--train",
                "batch_size=4",
                "--train",
                "num_workers=0",
                "--audio-samples",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    report = (out / "report.json").read_text()
    assert "#member=" in report  # the corpus clips were read from the shards


def test_sharded_layout_for_files_and_captions(model, tmp_path):
    import soundfile as sf

    from claptune.embed import embed_to_sharded_store, embed_to_store

    rng = np.random.default_rng(1)
    files = []
    for i in range(5):
        files.append(str(tmp_path / f"c{i}.wav"))
        sf.write(files[-1], (0.1 * rng.standard_normal(4000 + 3000 * i)).astype(np.float32), 16000)
    texts = ["rain", "a dog", "wind in trees"]
    for kind, items in (("audio", files), ("text", texts)):
        flat = load_store(
            embed_to_store(
                model, items, tmp_path / f"{kind}-npz", kind=kind, chunk_size=2, progress=False
            )
        )
        out = embed_to_sharded_store(
            model, items, tmp_path / f"{kind}-sh", kind=kind, chunk_size=2, progress=False
        )
        got = ShardedStore.open(out, model).load()
        assert got.ids == flat.ids
        np.testing.assert_allclose(got.embeddings, flat.embeddings, atol=1e-6)
        written = sorted(out.glob("shards/*/*.tar"))
        assert len(written) == -(-len(items) // 2)
        stamp = [p.stat().st_mtime_ns for p in written]
        embed_to_sharded_store(model, items, out, kind=kind, chunk_size=2, progress=False)
        assert [p.stat().st_mtime_ns for p in written] == stamp  # a rerun rewrites nothing


def test_ds_from_a_captioned_corpus_of_shards(tiny_clap_dir, shard_set, tmp_path):
    out = tmp_path / "ds"
    assert (
        main(
            [
                "curate",
                "--method",
                "ds",
                "--model",
                str(tiny_clap_dir),
                "--corpus",
                shard_set[0],
                "--classes",
                "tone,noise",
                "--threshold",
                "ds=q0.5",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = (out / "pairs.csv").read_text().splitlines()[1:]
    # every corpus clip is a shard member (kept, not taken for a missing file), with its caption
    assert rows and all("#member=" in r and "a sound number" in r for r in rows)
