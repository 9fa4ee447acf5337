"""`claptune curate` end to end with the tiny random CLAP: files embedded on the fly or read
from stores, outputs equal to the library on the same embeddings, bad input, real data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from claptune.cli import main
from claptune.curation import CurationInputs, CurationSettings, curate, curation_prompts, read_pairs
from claptune.embed import encode_text, load_store
from conftest import CAPTIONED_SFX, ESC50_SUBSET, require_shared_data


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Six short clips (sines and noise), a corpus manifest pairing three of them with
    captions, and a caption list."""
    root = tmp_path_factory.mktemp("curate_files")
    rng = np.random.default_rng(0)
    t = np.arange(24000) / 48000
    clips = []
    for i in range(6):
        wave = np.sin(2 * np.pi * (200 + 150 * i) * t) if i % 2 else rng.standard_normal(24000)
        path = root / "clips" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.3 * wave).astype(np.float32), 48000)
        clips.append(path)
    captions = ["a dog barking", "rain falling on a roof", "a bird singing", "a car engine"]
    with (root / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "caption", "source"])
        for path, caption in zip(clips[:4], captions, strict=True):
            writer.writerow([path.relative_to(root), caption, "test"])
    (root / "captions.txt").write_text("a dog barking loudly\nthunder\nwind in trees\n")
    return {"root": root, "clips": clips}


@pytest.fixture(scope="module")
def stores(files, tiny_clap_dir, tmp_path_factory):
    """`claptune embed` stores of the clips and of the caption list."""
    out = tmp_path_factory.mktemp("curate_stores")
    root = files["root"]
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--audio",
                str(root / "clips"),
                "--out",
                str(out / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "embed",
                "--model",
                str(tiny_clap_dir),
                "--text",
                str(root / "captions.txt"),
                "--out",
                str(out / "t"),
                "--no-progress",
            ]
        )
        == 0
    )
    return out


def run_cli(*argv) -> int:
    return main(["curate", *map(str, argv), "--no-progress"])


def test_all_methods_on_files_match_the_library(files, tiny_clap_dir, tmp_path, capsys):
    root, out = files["root"], tmp_path / "out"
    rc = run_cli(
        "--method",
        "ds,ads,a2a,pseudo",
        "--model",
        tiny_clap_dir,
        "--corpus",
        root / "manifest.csv",
        "--audio",
        root / "clips",
        "--target-audio",
        *files["clips"][3:],
        "--classes",
        "dog,rain,bird_song",
        "--threshold",
        "ds=q0.5",
        "ads=q0.5",
        "a2a=q0.5",
        "pseudo=q0",
        "--max-per-class",
        "0",
        "--cache-dir",
        tmp_path / "cache",
        "--out",
        out,
    )
    printed = capsys.readouterr().out
    assert rc == 0
    assert "ds: best caption-prompt cosine" in printed and "kept by threshold" in printed
    with (out / "pairs.csv").open(newline="") as fh:
        assert next(csv.reader(fh)) == ["audio", "text", "score", "method", "class"]
    pairs = read_pairs(out / "pairs.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "scores.png").stat().st_size > 0
    assert summary["n_pairs"] == len(pairs) > 0
    assert set(summary["per_method"]) == {"ds", "ads", "a2a", "pseudo"}

    # the same curation from the cached stores through the library
    emb = tmp_path / "cache" / "embeddings"
    audio, target = load_store(emb / "audio"), load_store(emb / "target")
    corpus_text = load_store(emb / "corpus_text")
    from claptune.evaluate.zeroshot import resolve_templates, text_classifier
    from claptune.models import load_model

    model = load_model(str(tiny_clap_dir))
    names = ["dog", "rain", "bird_song"]
    prompts = curation_prompts(names)
    inputs = CurationInputs(
        audio_ids=audio.ids,
        audio_emb=audio.embeddings,
        corpus_audio=[str(root / f"clips/c{i}.wav") for i in range(4)],
        corpus_captions=corpus_text.ids,
        corpus_caption_emb=corpus_text.embeddings,
        target_ids=target.ids,
        target_emb=target.embeddings,
        class_names=names,
        prompts=prompts,
        prompt_emb=encode_text(model, prompts, progress=False),
        class_emb=text_classifier(model, names, resolve_templates("ensemble")),  # as improve
        logit_scale=float(model.logit_scale.detach()),
    )
    expected = curate(
        ["ds", "ads", "a2a", "pseudo"],
        inputs,
        CurationSettings(
            ds_threshold="q0.5",
            ads_threshold="q0.5",
            a2a_threshold="q0.5",
            pseudo_threshold="q0",
            pseudo_max_per_class=0,
        ),
    )
    assert (pairs.audio, pairs.text, pairs.method, pairs.classes) == (
        expected.audio,
        expected.text,
        expected.method,
        expected.classes,
    )
    np.testing.assert_allclose(pairs.score, expected.score, rtol=0, atol=1e-12)
    assert pairs.classes.count("") == 0  # every DS-derived and pseudo pair names its class


def test_du_from_stores_without_model(stores, tmp_path):
    assert (
        run_cli(
            "--method",
            "du",
            "--audio",
            stores / "a",
            "--text",
            stores / "t",
            "--top-k",
            "2",
            "--out",
            tmp_path / "du",
        )
        == 0
    )
    pairs = read_pairs(tmp_path / "du" / "pairs.csv")
    assert len(pairs) == 6 * 2 and set(pairs.method) == {"du"}
    a, t = load_store(stores / "a"), load_store(stores / "t")
    s = a.embeddings.astype(np.float64) @ t.embeddings.astype(np.float64).T
    for i, clip in enumerate(a.ids):
        got = [x for c, x in zip(pairs.audio, pairs.text, strict=True) if c == clip]
        assert got == [t.ids[j] for j in np.argsort(-s[i], kind="stable")[:2]]


def test_threshold_keeping_nothing_fails_and_writes_nothing(files, tiny_clap_dir, tmp_path, capsys):
    rc = run_cli(
        "--method",
        "ds",
        "--model",
        tiny_clap_dir,
        "--corpus",
        files["root"] / "manifest.csv",
        "--classes",
        "dog,rain",
        "--threshold",
        "1.5",
        "--out",
        tmp_path / "none",
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "keeps nothing" in err and "no pairs passed" in err
    assert not (tmp_path / "none" / "pairs.csv").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--method", "ds,ads", "--threshold", "0.7"], "several methods"),
        (["--method", "dss"], "unknown method"),
        (["--method", "ds", "--threshold", "q2"], "quantile"),
        (["--method", "du", "--audio", "nowhere/", "--text", "nowhere.txt"], "not found"),
        (["--method", "ads", "--classes", "dog"], "needs unpaired clips"),
    ],
)
def test_bad_arguments(tmp_path, tiny_clap_dir, capsys, argv, message):
    assert run_cli(*argv, "--model", tiny_clap_dir, "--out", tmp_path / "x") == 2
    assert message in capsys.readouterr().err


def test_stores_from_different_models_are_refused(stores, tmp_path, capsys):
    import shutil

    shutil.copytree(stores / "t", tmp_path / "t2")
    manifest = json.loads((tmp_path / "t2" / "manifest.json").read_text())
    manifest["identity"] = {**manifest["identity"], "weights": "another"}
    (tmp_path / "t2" / "manifest.json").write_text(json.dumps(manifest))
    assert (
        run_cli(
            "--method",
            "du",
            "--audio",
            stores / "a",
            "--text",
            tmp_path / "t2",
            "--out",
            tmp_path / "du",
        )
        == 2
    )
    assert "different models" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_corpus_and_esc50_classes(tiny_clap_dir, tmp_path):
    """DS over 200 captioned-sfx captions against the ESC-50 class names, pseudo-labels on
    20 ESC-50 clips: the real readers and decoders, whatever the (random) model says."""
    corpus_dir = require_shared_data(CAPTIONED_SFX)
    esc_dir = require_shared_data(ESC50_SUBSET)
    with (corpus_dir / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:200]
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "caption"])
        writer.writerows([corpus_dir / r["path"], r["caption"]] for r in rows)
    clips = sorted((esc_dir / "audio").glob("*.flac"))[:20]
    (tmp_path / "target.txt").write_text("\n".join(map(str, clips)) + "\n")
    assert (
        run_cli(
            "--method",
            "ds,pseudo",
            "--model",
            tiny_clap_dir,
            "--corpus",
            manifest,
            "--target",
            "esc50",
            "--root",
            esc_dir,
            "--target-audio",
            tmp_path / "target.txt",
            "--threshold",
            "ds=q0.9",
            "pseudo=q0.5",
            "--out",
            tmp_path / "out",
        )
        == 0
    )
    pairs = read_pairs(tmp_path / "out" / "pairs.csv")
    ds = [i for i, m in enumerate(pairs.method) if m == "ds"]
    assert 20 <= len(ds) <= 25  # the top tenth of 200 captions (ties may add a few)
    by_caption = {r["caption"]: str(corpus_dir / r["path"]) for r in rows}
    assert all(pairs.audio[i] == by_caption[pairs.text[i]] for i in ds)  # original audio
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["meta"]["ds"]["n_classes"] == 50
    assert set(pairs.audio[i] for i, m in enumerate(pairs.method) if m == "pseudo") <= set(
        map(str, clips)
    )
