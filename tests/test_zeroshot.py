"""Zero-shot evaluation and retrieval metrics against brute-force oracles, and the end-to-end
`claptune zeroshot` run with the tiny random CLAP on synthetic and real ESC-50 clips."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from claptune.cli import main
from claptune.data import ClassificationDataset, load_dataset
from claptune.embed import encode_audio, encode_text
from claptune.errors import ClaptuneError
from claptune.evaluate.retrieval import mean_recall, retrieval_metrics
from claptune.evaluate.zeroshot import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    class_prompts,
    class_scores,
    clean_class_name,
    evaluate_zeroshot,
    predict,
    resolve_templates,
    score,
    text_classifier,
)
from conftest import ESC50_SUBSET, require_shared_data
from test_data import make_esc50


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class HashTextModel(torch.nn.Module):
    """Stands in for a model: each text maps to a fixed random unit vector."""

    dim = 8

    def text_embeddings(self, texts):
        rows = [
            np.random.default_rng(
                int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)
            ).standard_normal(self.dim)
            for t in texts
        ]
        return torch.from_numpy(unit_rows(np.array(rows)).astype(np.float32))


# -- prompts ----------------------------------------------------------------------------------------
def test_clean_class_name():
    assert clean_class_name("dog_bark") == "dog bark"
    assert clean_class_name("cafe/restaurant") == "cafe or restaurant"
    assert clean_class_name("  vacuum__cleaner ") == "vacuum cleaner"
    assert clean_class_name("Hand-Saw") == "Hand-Saw"


def test_templates_and_prompts():
    assert resolve_templates(None) == DEFAULT_TEMPLATES == ("this is a sound of {}",)
    assert resolve_templates("ensemble") == ENSEMBLE_TEMPLATES and len(ENSEMBLE_TEMPLATES) > 1
    assert resolve_templates(["default", "a {} sound", "default"]) == (
        "this is a sound of {}",
        "a {} sound",
    )
    for bad in ("no placeholder", "{} and {}", "a {name} sound", []):
        with pytest.raises(ClaptuneError):
            resolve_templates(bad)
    assert class_prompts(["dog_bark", "siren"], ["a {}", "the {} sound"]) == [
        ["a dog bark", "the dog bark sound"],
        ["a siren", "the siren sound"],
    ]


def test_text_classifier_is_renormalised_prompt_mean():
    model, names = HashTextModel(), ["dog_bark", "siren", "rain"]
    templates = ["a {}", "the sound of {}", "{} can be heard"]
    got = text_classifier(model, names, templates)
    for c, name in enumerate(names):
        emb = encode_text(model, [t.format(clean_class_name(name)) for t in templates])
        mean = emb.mean(axis=0)
        np.testing.assert_allclose(got[c], mean / np.linalg.norm(mean), atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (3, model.dim)


# -- metrics against brute force --------------------------------------------------------------------
def test_score_against_brute_force(rng):
    names = [f"c{i}" for i in range(6)]
    labels = rng.integers(0, 5, 200)  # class c5 has no clips
    preds = np.where(rng.random(200) < 0.4, labels, rng.integers(0, 6, 200))
    accuracy, per_class, confusion = score(preds, labels, names)
    assert accuracy == pytest.approx(sum(p == y for p, y in zip(preds, labels, strict=True)) / 200)
    for c in range(6):
        idx = [i for i in range(200) if labels[i] == c]
        if idx:
            assert per_class[names[c]] == pytest.approx(sum(preds[i] == c for i in idx) / len(idx))
        else:
            assert names[c] not in per_class
        for p in range(6):
            assert confusion[c, p] == sum(1 for i in range(200) if labels[i] == c and preds[i] == p)


def test_predict_is_argmax_cosine_with_low_index_ties(rng):
    audio = unit_rows(rng.standard_normal((30, 5)))
    classifier = unit_rows(rng.standard_normal((4, 5)))
    oracle = [max(range(4), key=lambda c: (float(a @ classifier[c]), -c)) for a in audio]
    assert predict(audio, classifier).tolist() == oracle
    assert predict(audio[:1], np.stack([classifier[0], classifier[0]])).tolist() == [0]


def test_evaluate_zeroshot_with_given_embeddings(rng, tmp_path):
    model, names = HashTextModel(), ["dog", "cat", "bird"]
    classifier = text_classifier(model, names)
    labels = rng.integers(0, 3, 40)
    audio = unit_rows(classifier[labels] + 0.9 * rng.standard_normal((40, model.dim)))
    ds = ClassificationDataset("toy", [tmp_path / f"{i}.wav" for i in range(40)], labels, names)
    res = evaluate_zeroshot(model, ds, audio_emb=audio)
    oracle = [int(np.argmax([a @ classifier[c] for c in range(3)])) for a in audio]
    assert res.predictions.tolist() == oracle
    assert res.accuracy == pytest.approx(np.mean(np.array(oracle) == labels))
    assert res.n_clips == 40 and res.failed == [] and res.confusion.sum() == 40


def brute_force_ranks(scores: np.ndarray, positives: list[set[int]]) -> np.ndarray:
    """0-based rank of the best positive: wrong candidates scoring >= it."""
    ranks = []
    for row, pos in zip(scores, positives, strict=True):
        best = max(row[j] for j in pos)
        ranks.append(sum(1 for j in range(len(row)) if j not in pos and row[j] >= best))
    return np.array(ranks)


@pytest.mark.parametrize("block_size", [1, 3, 1024])
def test_retrieval_against_brute_force(rng, block_size):
    n = 23
    audio = unit_rows(rng.standard_normal((n, 6)))
    text = unit_rows(audio + 0.8 * rng.standard_normal((n, 6)))
    got = retrieval_metrics(audio, text, ks=(1, 5, 10), block_size=block_size)
    s = audio @ text.T
    a2t = brute_force_ranks(s, [{i} for i in range(n)])
    t2a = brute_force_ranks(s.T, [{i} for i in range(n)])
    for k in (1, 5, 10):
        assert got[f"a2t_R@{k}"] == pytest.approx(np.mean(a2t < k))
        assert got[f"t2a_R@{k}"] == pytest.approx(np.mean(t2a < k))
    assert got["a2t_median_rank"] == pytest.approx(np.median(a2t) + 1)
    assert got["t2a_mean_rank"] == pytest.approx(t2a.mean() + 1)


def test_retrieval_several_captions_per_clip(rng):
    audio = unit_rows(rng.standard_normal((7, 5)))
    owner = np.repeat(np.arange(7), [1, 2, 3, 1, 2, 1, 2])  # 12 captions
    text = unit_rows(audio[owner] + rng.standard_normal((12, 5)))
    got = retrieval_metrics(audio, text, ks=(1, 3), text_audio_index=owner, block_size=2)
    s = audio @ text.T
    a2t = brute_force_ranks(s, [set(np.flatnonzero(owner == i).tolist()) for i in range(7)])
    t2a = brute_force_ranks(s.T, [{int(o)} for o in owner])
    for k in (1, 3):
        assert got[f"a2t_R@{k}"] == pytest.approx(np.mean(a2t < k))
        assert got[f"t2a_R@{k}"] == pytest.approx(np.mean(t2a < k))


@pytest.mark.parametrize("block_size", [1, 4, 1024])
def test_retrieval_captions_shared_by_clips_with_ties(rng, block_size):
    """Captions shared by several clips (audio_text_index); embeddings on a coarse grid so that
    exact ties are common: every tie counts against the model, in both directions."""
    owner = np.array([0, 0, 1, 2, 2, 2, 3, 4, 4, 1, 3, 0])  # 12 clips, 5 distinct captions
    audio = np.round(rng.standard_normal((12, 3)))  # many clips score equally
    audio[1] = audio[0]  # and two identical clips of one caption
    audio[7] = audio[3]  # and two identical clips of different captions
    text = np.round(rng.standard_normal((5, 3)))
    got = retrieval_metrics(
        audio, text, ks=(1, 2, 3), block_size=block_size, audio_text_index=owner
    )
    s = audio.astype(np.float32) @ text.astype(np.float32).T
    a2t = brute_force_ranks(s, [{int(o)} for o in owner])
    t2a = brute_force_ranks(s.T, [set(np.flatnonzero(owner == j).tolist()) for j in range(5)])
    assert (a2t > 0).any() and (t2a > 0).any()  # the oracle sees ties that cost a rank
    for k in (1, 2, 3):
        assert got[f"a2t_R@{k}"] == pytest.approx(np.mean(a2t < k))
        assert got[f"t2a_R@{k}"] == pytest.approx(np.mean(t2a < k))
    assert mean_recall(got) == pytest.approx(
        np.mean([np.mean(r < k) for r in (a2t, t2a) for k in (1, 2, 3)])
    )
    # a constant model: every candidate ties with the right one, so nothing is retrieved at 1
    flat = retrieval_metrics(np.ones((12, 3)), np.ones((5, 3)), ks=(1,), audio_text_index=owner)
    assert flat["a2t_R@1"] == 0.0 and flat["t2a_R@1"] == 0.0
    with pytest.raises(ValueError, match="at least one match"):
        retrieval_metrics(audio, text, audio_text_index=np.zeros(12, dtype=int))
    with pytest.raises(ValueError, match="not both"):
        retrieval_metrics(audio, text, audio_text_index=owner, text_audio_index=np.arange(5))


def test_retrieval_ties_count_against_the_model():
    same = unit_rows(np.ones((5, 3)))
    got = retrieval_metrics(same, same, ks=(1, 5))
    assert got["a2t_R@1"] == 0.0 and got["t2a_R@1"] == 0.0 and got["a2t_R@5"] == 1.0
    with pytest.raises(ValueError):
        retrieval_metrics(same, same[:4])


# -- end to end ------------------------------------------------------------------------------------
def test_cli_zeroshot_end_to_end(tiny_clap_dir, tmp_path, capsys):
    from claptune.models import load_model

    root = make_esc50(tmp_path / "esc")
    out = tmp_path / "out"
    rc = main(
        [
            "zeroshot",
            "--model",
            str(tiny_clap_dir),
            "--dataset",
            "esc50",
            "--root",
            str(root),
            "--templates",
            "ensemble",
            "--no-progress",
            "--num-workers",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "rooster" in printed
    report = json.loads((out / "zeroshot.json").read_text())
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["n_clips"] == len(report["predictions"]) == 5 and report["failed"] == []
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["config"]["templates"] == list(ENSEMBLE_TEMPLATES)
    assert report["config"]["model_identity"]["backend"] == "hf_clap"
    # the predictions are those of an independent computation with the same model
    model = load_model(tiny_clap_dir)
    ds = load_dataset("esc50", root=root)
    audio = encode_audio(model, [str(p) for p in ds.items], progress=False).embeddings
    want = predict(audio, text_classifier(model, ds.class_names, ENSEMBLE_TEMPLATES))
    assert [p["predicted"] for p in report["predictions"]] == [ds.class_names[c] for c in want]
    correct = [p["predicted"] == p["label"] for p in report["predictions"]]
    assert report["accuracy"] == pytest.approx(np.mean(correct))
    for name, acc in report["per_class"].items():
        mine = [
            c for c, p in zip(correct, report["predictions"], strict=True) if p["label"] == name
        ]
        assert acc == pytest.approx(np.mean(mine))
    folds = ds.folds.tolist()
    assert set(report["per_fold"]) == {str(f) for f in folds}
    for fold, acc in report["per_fold"].items():
        assert acc == pytest.approx(
            np.mean([c for c, f in zip(correct, folds, strict=True) if str(f) == fold])
        )


def test_cached_embeddings_match_and_are_reused(tiny_clap_dir, tmp_path):
    from claptune.errors import AudioDecodeError
    from claptune.models import load_model

    model = load_model(tiny_clap_dir)
    ds = load_dataset("esc50", root=make_esc50(tmp_path / "esc"))
    plain = evaluate_zeroshot(model, ds, progress=False)
    cache = tmp_path / "cache"
    first = evaluate_zeroshot(model, ds, progress=False, cache_dir=cache)
    parts = sorted(cache.rglob("part-*.npz"))
    again = evaluate_zeroshot(model, ds, templates="ensemble", progress=False, cache_dir=cache)
    assert sorted(cache.rglob("part-*.npz")) == parts  # nothing embedded twice
    assert first.predictions.tolist() == plain.predictions.tolist()
    assert len(again.predictions) == len(ds)
    # a bad clip recorded by a "skip" run still stops a later "raise" run
    (tmp_path / "esc" / "audio" / "1-100-A-3.flac").write_bytes(b"")
    skipped = evaluate_zeroshot(model, ds, progress=False, cache_dir=cache, on_error="skip")
    assert skipped.n_clips == len(ds) - 1 and "1-100-A-3.flac" in skipped.failed[0][0]
    with pytest.raises(AudioDecodeError, match="1-100-A-3.flac"):
        evaluate_zeroshot(model, ds, progress=False, cache_dir=cache)


def test_cli_zeroshot_real_esc50_clips(tiny_clap_dir, tmp_path):
    root = require_shared_data(ESC50_SUBSET)
    out = tmp_path / "out"
    rc = main(
        [
            "zeroshot",
            "--model",
            str(tiny_clap_dir),
            "--dataset",
            "esc50",
            "--root",
            str(root),
            "--folds",
            "3,5",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads((out / "zeroshot.json").read_text())
    assert report["n_clips"] == 3 and report["config"]["folds"] == [3, 5]
    assert sum(report["per_class_n"].values()) == 3


def test_cli_zeroshot_labels_unlabeled_clips(tiny_clap_dir, tmp_path, capsys):
    """--audio/--classes: a label per clip in predictions.csv for any model, plain or
    transductive, equal to an independent computation; on a labelled target --transductive
    adds the transductive accuracy beside the plain one."""
    import csv

    from claptune.evaluate.transductive import PREDICTION_COLUMNS, transduce
    from claptune.evaluate.zeroshot import prompt_embeddings
    from claptune.models import load_model

    root = make_esc50(tmp_path / "esc")
    ds = load_dataset("esc50", root=root)
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(ds.class_names) + "\n")
    model = load_model(tiny_clap_dir)
    items = [str(p) for p in ds.items]
    audio = encode_audio(model, items, progress=False).embeddings
    prompts = prompt_embeddings(model, ds.class_names, ENSEMBLE_TEMPLATES)
    scale = float(model.logit_scale.detach())
    for flags, method in (([], "none"), (["--transductive"], "claptune")):
        out = tmp_path / f"out-{method}"
        argv = ["zeroshot", "--model", str(tiny_clap_dir), "--audio", str(root / "audio")]
        argv += ["--classes", str(classes), "--num-workers", "0", "--quiet", "--out", str(out)]
        assert main(argv + flags) == 0
        assert "predictions.csv" in capsys.readouterr().out
        with (out / "predictions.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert tuple(rows[0]) == PREDICTION_COLUMNS
        by_path = {r["path"]: r for r in rows}
        assert sorted(by_path) == sorted(items)
        probs = transduce(audio, prompts, scale, method)
        for item, p in zip(items, probs, strict=True):
            row = by_path[item]
            assert row["label"] == ds.class_names[int(np.argmax(p))]
            assert float(row["confidence"]) == pytest.approx(p.max(), abs=1e-4)
        summary = json.loads((out / "zeroshot.json").read_text())
        assert summary["config"]["transductive"] == method and "accuracy" not in summary
    # a labelled target: the transductive accuracy beside the plain one, and the same labels
    out = tmp_path / "labelled"
    argv = ["zeroshot", "--model", str(tiny_clap_dir), "--target", "esc50", "--root", str(root)]
    assert main(argv + ["--num-workers", "0", "--quiet", "--transductive", "--out", str(out)]) == 0
    report = json.loads((out / "zeroshot.json").read_text())
    trans = transduce(audio, prompts, scale, "claptune").argmax(axis=1)
    assert report["transductive"]["accuracy"] == pytest.approx(np.mean(trans == ds.labels))
    with (out / "predictions.csv").open() as f:
        assert [r["label"] for r in csv.DictReader(f)] == [ds.class_names[c] for c in trans]
    # a finished run's folder is replaced only with --overwrite, and then wholly: the plain
    # run writes no predictions.csv, so the transductive run's goes
    again = argv + ["--num-workers", "0", "--quiet", "--out", str(out)]
    assert main(again) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(again + ["--overwrite"]) == 0
    assert not (out / "predictions.csv").exists() and (out / "zeroshot.json").is_file()
    # one-line errors, exit 2
    for bad in (
        ["--audio", str(root)],
        ["--audio", str(root), "--classes", "a,b", "--target", "esc50"],
        ["--audio", str(root), "--classes", "a,b", "--transductive", "magic"],
    ):
        assert main(["zeroshot", "--model", str(tiny_clap_dir), "--out", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert "go together" in err and "not both" in err and "unknown --transductive" in err


def test_cli_zeroshot_scores_with_the_class_head_a_saved_model_carries(
    tiny_clap_dir, tmp_path, capsys
):
    """A model folder with a class head (what improve and adapt save): zeroshot scores with it
    when it holds every class asked for, on a labelled target and on unlabeled clips, equal to
    an independent computation; --no-class-head, --transductive and a head over some of the
    classes only score with the prompts alone; a damaged head file is one line."""
    import csv
    import shutil

    from claptune.evaluate.prototypes import HEAD_FILE, fit_class_head
    from claptune.evaluate.transductive import transduce
    from claptune.evaluate.zeroshot import prompt_embeddings
    from claptune.models import load_model

    root = make_esc50(tmp_path / "esc")
    ds = load_dataset("esc50", root=root)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_clap_dir, model_dir)
    model = load_model(model_dir)
    assert getattr(model, "class_head", None) is None
    items = [str(p) for p in ds.items]
    audio = encode_audio(model, items, progress=False).embeddings
    prompts = prompt_embeddings(model, ds.class_names, ENSEMBLE_TEMPLATES)
    scale = float(model.logit_scale.detach())
    # a head over every class (named in another case: matched all the same), with a weight
    # that moves predictions
    upper = [c.upper() for c in ds.class_names]
    head = fit_class_head(audio, prompts, scale, upper, weight=2.0)
    head.save(model_dir)
    assert load_model(model_dir).class_head.n_clips == len(items)
    text = text_classifier(model, ds.class_names, ENSEMBLE_TEMPLATES)
    with_head = class_scores(audio, head.classifier(text, ds.class_names)).argmax(1)
    plain = class_scores(audio, text).argmax(1)
    assert (with_head != plain).any()  # the checks below can tell the two apart

    base = ["zeroshot", "--model", str(model_dir), "--num-workers", "0", "--quiet"]
    labelled = [*base, "--target", "esc50", "--root", str(root)]
    for flags, expected in (([], with_head), (["--no-class-head"], plain)):
        out = tmp_path / f"labelled{len(flags)}"
        assert main([*labelled, *flags, "--out", str(out)]) == 0
        report = json.loads((out / "zeroshot.json").read_text())
        assert [ds.class_names.index(p["predicted"]) for p in report["predictions"]] == list(
            expected
        )
        printed = capsys.readouterr().out
        if flags:
            assert report["config"]["class_head"] is None and "class head" not in printed
        else:
            assert report["config"]["class_head"]["classes"] == len(ds.class_names)
            assert (
                f"the {len(ds.class_names)} classes scored with the model's class head" in printed
            )
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(ds.class_names) + "\n")
    unlabeled = [*base, "--audio", str(root / "audio"), "--classes", str(classes)]
    runs = (
        ([], with_head),
        (["--no-class-head"], plain),
        (["--transductive"], transduce(audio, prompts, scale, "claptune").argmax(1)),
    )
    for i, (flags, expected) in enumerate(runs):
        out = tmp_path / f"unlabeled{i}"
        assert main([*unlabeled, *flags, "--out", str(out)]) == 0
        with (out / "predictions.csv").open() as f:
            labels = {r["path"]: r["label"] for r in csv.DictReader(f)}
        assert [labels[item] for item in items] == [ds.class_names[c] for c in expected]
        summary = json.loads((out / "zeroshot.json").read_text())
        assert (summary["config"]["class_head"] is not None) == (not flags)
    capsys.readouterr()
    # a head over some of the classes only is not used: moved rows would draw clips to them
    fit_class_head(audio, prompts[:-1], scale, ds.class_names[:-1], weight=2.0).save(model_dir)
    out = tmp_path / "partial"
    assert main([*labelled, "--out", str(out)]) == 0
    report = json.loads((out / "zeroshot.json").read_text())
    assert [ds.class_names.index(p["predicted"]) for p in report["predictions"]] == list(plain)
    n = len(ds.class_names)
    assert f"class head not used: the model's head holds {n - 1} of these {n}" in (
        capsys.readouterr().out
    )
    # a damaged head file, or one of another model: one line, exit 2
    (model_dir / HEAD_FILE).write_bytes(b"not a safetensors file")
    assert main([*labelled, "--out", str(tmp_path / "damaged")]) == 2
    assert f"{HEAD_FILE} cannot be read" in capsys.readouterr().err
    fit_class_head(np.eye(4)[:3], np.eye(4)[:3, None], 1.0, ds.class_names[:3]).save(model_dir)
    assert main([*labelled, "--out", str(tmp_path / "foreign")]) == 2
    assert "does not fit it" in capsys.readouterr().err
