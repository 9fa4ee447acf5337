"""claptune.embed: batch-independent encoding, bad clips, the resumable keyed store, sharding, CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import claptune.embed.plain as embed
from claptune.cli import main
from claptune.embed import embed_to_store, encode_audio, encode_text, load_store
from claptune.errors import AudioDecodeError, ClaptuneError
from conftest import ESC50_SUBSET, require_shared_data


@pytest.fixture(scope="module")
def model(tiny_clap_dir):
    from claptune.models.hf_clap import HFClapModel

    return HFClapModel.load(tiny_clap_dir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Eight clips of different lengths (short, exact, long), rates and channel counts."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i, (seconds, rate, channels) in enumerate(
        [
            (0.3, 48000, 1),
            (1.0, 48000, 1),
            (2.5, 44100, 2),
            (0.7, 16000, 1),
            (1.6, 22050, 2),
            (0.05, 48000, 1),
            (3.2, 48000, 1),
            (1.0, 32000, 2),
        ]
    ):
        path = folder / f"clip{i}.{'flac' if i % 2 else 'wav'}"
        sf.write(path, 0.1 * rng.standard_normal((int(seconds * rate), channels)), rate)
        paths.append(path)
    return paths


def test_vectors_do_not_depend_on_batch_composition(model, clips):
    full = encode_audio(model, clips, batch_size=4, num_workers=2, progress=False).embeddings
    assert full.shape == (len(clips), 16) and full.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-6)
    order = [5, 2, 7, 0]
    for batch_size, workers in [(1, 0), (3, 1), (64, 2)]:
        part = encode_audio(
            model,
            [clips[i] for i in order],
            batch_size=batch_size,
            num_workers=workers,
            progress=False,
        ).embeddings
        np.testing.assert_allclose(part, full[order], atol=1e-6)


def test_waveforms_and_files_give_the_same_vectors(model, tmp_path, rng):
    wave = (0.1 * rng.standard_normal(70000)).astype(np.float32)
    path = tmp_path / "w.wav"
    sf.write(path, wave, 48000, subtype="FLOAT")
    from_file, from_array = encode_audio(model, [path, wave], progress=False).embeddings
    np.testing.assert_allclose(from_file, from_array, atol=1e-7)


def test_bad_clips_raise_or_are_skipped(model, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    items = [clips[0], bad, clips[1], tmp_path / "missing.flac"]
    with pytest.raises(AudioDecodeError):
        encode_audio(model, items, progress=False)
    enc = encode_audio(model, items, progress=False, on_error="skip")
    assert enc.kept.tolist() == [0, 2]
    assert [item for item, _ in enc.failed] == [str(bad), str(tmp_path / "missing.flac")]
    np.testing.assert_allclose(
        enc.embeddings, encode_audio(model, clips[:2], progress=False).embeddings, atol=1e-6
    )


def test_encode_audio_restores_training_mode(model, clips):
    model.train()
    encode_audio(model, clips[:1], progress=False)
    assert model.training and model.model.training
    model.eval()


def test_text_batches_do_not_change_vectors(model):
    texts = ["a dog", "rain falling on leaves", "x", "a very long caption " * 3, "bells"]
    a = encode_text(model, texts, batch_size=2, progress=False)
    b = encode_text(model, texts, batch_size=256, progress=False)
    assert a.shape == (5, 16) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert encode_text(model, [], progress=False).shape == (0, 16)


def test_store_round_trip_matches_encode_audio(model, clips, tmp_path):
    out = embed_to_store(
        model, [str(c) for c in clips], tmp_path / "store", chunk_size=3, progress=False
    )
    store = load_store(out, model=model)
    assert store.ids == [str(c) for c in clips]
    np.testing.assert_allclose(
        store.embeddings, encode_audio(model, clips, progress=False).embeddings, atol=1e-6
    )
    assert store.manifest["identity"] == model.identity() and store.manifest["failed"] == []


def test_store_resumes_after_a_kill_without_recomputing(model, clips, tmp_path, monkeypatch):
    items = [str(c) for c in clips]
    real_write, real_encode = embed._write_part, embed.encode_audio
    written, encoded = [], []

    def write_then_die(*args, **kwargs):
        if written:
            raise KeyboardInterrupt("killed")
        written.append(real_write(*args, **kwargs))

    monkeypatch.setattr(embed, "_write_part", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        embed_to_store(model, items, tmp_path, chunk_size=3, progress=False)
    assert len(written) == 1 and not (tmp_path / "manifest.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written file left behind

    monkeypatch.setattr(embed, "_write_part", real_write)
    monkeypatch.setattr(
        embed, "encode_audio", lambda m, its, **kw: encoded.extend(its) or real_encode(m, its, **kw)
    )
    embed_to_store(model, items, tmp_path, chunk_size=3, progress=False)
    assert sorted(encoded) == sorted(items[3:])  # the first part was kept, not recomputed
    np.testing.assert_allclose(
        load_store(tmp_path).embeddings,
        real_encode(model, clips, progress=False).embeddings,
        atol=1e-6,
    )

    encoded.clear()
    embed_to_store(model, items, tmp_path, chunk_size=3, progress=False)
    assert encoded == []  # everything cached


def test_another_model_never_reuses_stale_vectors(model, tiny_clap_dir, clips, tmp_path):
    from claptune.models.hf_clap import HFClapModel

    items = [str(c) for c in clips[:3]]
    embed_to_store(model, items, tmp_path, progress=False)
    other = HFClapModel.load(tiny_clap_dir)
    with torch.no_grad():
        other.model.audio_projection.linear2.weight.mul_(-1.0)
    with pytest.raises(ClaptuneError, match="another model"):
        load_store(tmp_path, model=other)
    embed_to_store(other, items, tmp_path, progress=False)
    store = load_store(tmp_path, model=other)
    np.testing.assert_allclose(
        store.embeddings, encode_audio(other, items, progress=False).embeddings, atol=1e-6
    )
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one cache folder per model


def test_a_changed_file_is_embedded_again(model, tmp_path, rng):
    path = tmp_path / "a.wav"
    sf.write(path, 0.1 * rng.standard_normal(30000), 48000)
    before = load_store(embed_to_store(model, [str(path)], tmp_path / "s", progress=False))
    sf.write(path, 0.1 * rng.standard_normal(31000), 48000)
    after = load_store(embed_to_store(model, [str(path)], tmp_path / "s", progress=False))
    np.testing.assert_allclose(
        after.embeddings, encode_audio(model, [path], progress=False).embeddings, atol=1e-6
    )
    assert not np.allclose(before.embeddings, after.embeddings)


def test_store_records_skipped_failures(model, clips, tmp_path):
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS" + bytes(100))
    items = [str(clips[0]), str(bad), str(clips[1])]
    store = load_store(
        embed_to_store(model, items, tmp_path / "s", on_error="skip", progress=False)
    )
    assert store.ids == [items[0], items[2]]
    assert [f[0] for f in store.manifest["failed"]] == [str(bad)]
    with pytest.raises(AudioDecodeError, match="bad.ogg"):  # the cached failure still counts
        embed_to_store(model, items, tmp_path / "s", progress=False)


def test_text_store_keeps_duplicates_and_order(model, tmp_path):
    texts = ["a dog", "rain", "a dog"]
    store = load_store(embed_to_store(model, texts, tmp_path, kind="text", progress=False))
    assert store.ids == texts
    np.testing.assert_allclose(
        store.embeddings, encode_text(model, texts, progress=False), atol=1e-6
    )


def test_cli_embeds_audio_and_text(tiny_clap_dir, clips, tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(str(c) for c in clips[:2]) + "\n")
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--audio",
                str(clips[0].parent),
                str(listing),
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(load_store(tmp_path / "a").ids) == len(clips) + 2
    csv = tmp_path / "captions.csv"
    csv.write_text("path,caption\nx.wav,a dog barking\ny.wav,rain\n")
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--text",
                str(csv),
                "--out",
                str(tmp_path / "t"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert load_store(tmp_path / "t").ids == ["a dog barking", "rain"]
    capsys.readouterr()
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--text",
                str(csv),
                "--text-column",
                "text",
                "--out",
                str(tmp_path / "t2"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'text'" in err[0]


def test_cli_bad_audio_is_one_line_or_skipped(tiny_clap_dir, clips, tmp_path, capsys):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    args = [
        "embed",
        "--model",
        str(tiny_clap_dir),
        "--audio",
        str(clips[0]),
        str(empty),
        "--out",
        str(tmp_path / "s"),
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty.wav" in err[0] and "empty file" in err[0]
    assert main([*args, "--on-error", "skip"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_two_ranks_share_the_work(tiny_clap_dir, clips, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from claptune.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [
        "embed",
        "--model",
        str(tiny_clap_dir),
        "--audio",
        *map(str, clips),
        "--out",
        str(tmp_path),
        "--chunk-size",
        "2",
        "--no-progress",
    ]
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
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    parts = sorted(p.name for p in tmp_path.glob("cache/*/part-*.npz"))
    assert any(n.startswith("part-r0") for n in parts) and any(
        n.startswith("part-r1") for n in parts
    )
    store = load_store(tmp_path)
    assert store.ids == [str(c) for c in clips]
    # The merged view equals one process doing all the work.
    from claptune.models.hf_clap import HFClapModel

    ref = load_store(
        embed_to_store(
            HFClapModel.load(tiny_clap_dir),
            [str(c) for c in clips],
            tmp_path / "single",
            progress=False,
        )
    )
    np.testing.assert_allclose(store.embeddings, ref.embeddings, atol=1e-6)
    assert json.loads((tmp_path / "manifest.json").read_text())["n_embedded"] == len(clips)


def test_real_esc50_clips(model, tmp_path):
    audio = require_shared_data(ESC50_SUBSET) / "audio"
    files = sorted(audio.glob("*.flac"))[:4]
    store = load_store(embed_to_store(model, [str(f) for f in files], tmp_path, progress=False))
    assert store.embeddings.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(store.embeddings, axis=1), 1.0, atol=1e-6)
    # 5 s of 44.1 kHz -> 5 windows of the tiny model's 1 s at 48 kHz, averaged
    wave = encode_audio(model, [files[0]], progress=False).embeddings[0]
    np.testing.assert_allclose(store.embeddings[0], wave, atol=1e-6)
    assert len({tuple(np.round(e, 4)) for e in store.embeddings}) == 4


def test_long_files_stream_to_the_same_vectors(model, clips, tmp_path, monkeypatch):
    """A file past the streaming threshold is decoded and embedded block by block: the same
    vectors as whole-file decoding; a file that fails mid-stream is skipped or raised whole."""
    import claptune.embed.encode as embed

    bad = tmp_path / "nan_late.wav"
    data = 0.1 * np.random.default_rng(3).standard_normal(200_000).astype(np.float32)
    data[150_000] = np.nan  # found only after several blocks were embedded
    sf.write(bad, data, 48000, subtype="FLOAT")
    items = [clips[6], bad, clips[2], clips[0]]
    whole = encode_audio(model, items, batch_size=3, progress=False, on_error="skip")
    monkeypatch.setattr(embed, "STREAM_SAMPLES", 1000)  # every file streams
    monkeypatch.setattr("claptune.audio.BLOCK_FRAMES", 5000)
    streamed = encode_audio(model, items, batch_size=3, progress=False, on_error="skip")
    assert streamed.kept.tolist() == whole.kept.tolist() == [0, 2, 3]
    assert [p for p, _ in streamed.failed] == [str(bad)] and "non-finite" in streamed.failed[0][1]
    np.testing.assert_allclose(streamed.embeddings, whole.embeddings, rtol=0, atol=1e-6)
    with pytest.raises(AudioDecodeError, match="non-finite"):
        encode_audio(model, items, batch_size=3, progress=False)
