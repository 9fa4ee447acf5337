"""claptune improve: splits, config validation, and the whole pipeline end to end in process."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from claptune.embed import encode_text
from claptune.errors import ClaptuneError
from claptune.improve.config import ImproveConfig
from claptune.improve.splits import holdout_indices, make_splits, stratified_split
from conftest import write_tiny_corpus, write_tone


def test_stratified_split_is_disjoint_stratified_and_seeded():
    labels = np.repeat(np.arange(5), [8, 9, 10, 11, 12])
    split = stratified_split(labels, test_fraction=0.5, seed=3)
    assert np.intersect1d(split.adapt, split.test).size == 0
    assert np.array_equal(np.union1d(split.adapt, split.test), np.arange(labels.size))
    for cls, n in enumerate([8, 9, 10, 11, 12]):
        n_test = int(np.sum(labels[split.test] == cls))
        assert n_test == round(n * 0.5)
    again = stratified_split(labels, test_fraction=0.5, seed=3)
    assert np.array_equal(again.test, split.test)
    other = stratified_split(labels, test_fraction=0.5, seed=4)
    assert not np.array_equal(other.test, split.test)
    recorded = split.to_dict()
    assert recorded["seed"] == 3 and recorded["test"] == split.test.tolist()


def test_every_class_is_in_both_parts():
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2])
    for fraction in (0.1, 0.5, 0.9):
        split = stratified_split(labels, fraction, seed=0)
        assert set(labels[split.test]) == {0, 1, 2}
        assert set(labels[split.adapt]) == {0, 1, 2}


def test_make_splits_and_holdout():
    labels = np.repeat(np.arange(4), 6)
    splits = make_splits(labels, n_splits=3, test_fraction=0.5, seed=10)
    assert [s.seed for s in splits] == [10, 11, 12] and [s.index for s in splits] == [0, 1, 2]
    assert len({tuple(s.test) for s in splits}) == 3
    kept, held = holdout_indices(100, 0.1, seed=0)
    assert held.size == 10 and np.intersect1d(kept, held).size == 0
    assert np.array_equal(np.union1d(kept, held), np.arange(100))
    with pytest.raises(ValueError):
        stratified_split(labels, test_fraction=1.0)


def test_config_validates_itself():
    cfg = ImproveConfig(methods="ds,pseudo", corpus="/somewhere")
    assert cfg.methods == ("ds", "pseudo")
    assert ImproveConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ClaptuneError, match="unknown curation"):
        ImproveConfig(methods=("dss",), corpus="/x")
    with pytest.raises(ClaptuneError, match="unknown loss"):
        ImproveConfig(loss="softer", corpus="/x")
    with pytest.raises(ClaptuneError, match="unknown improve config keys"):
        ImproveConfig.from_dict({"modle": "x"})
    with pytest.raises(ClaptuneError, match="paired corpus"):
        ImproveConfig(methods=("ds",), corpus=None)
    with pytest.raises(ClaptuneError, match="needs --root"):
        ImproveConfig(target="folder", corpus="/x")
    with pytest.raises(ClaptuneError, match="audio_per_class"):
        ImproveConfig(audio_per_class=-1, corpus="/x")


def test_summarize_runs_pools_test_parts():
    from claptune.improve.runs import RunOutcome, summarize_runs

    labels = np.array([0, 0, 1, 1, 2, 2])
    before = np.array([0, 1, 1, 0, 2, 0])
    runs = [
        RunOutcome(
            split=0,
            seed=0,
            test=np.array([0, 2, 4]),
            pred_before=before,
            pred_after=np.array([0, 1, 1, 1, 2, 2]),
            n_pairs={"ds": 4},
        ),
        RunOutcome(
            split=1,
            seed=0,
            test=np.array([1, 3, 5]),
            pred_before=before,
            pred_after=np.array([0, 0, 1, 1, 2, 2]),
            n_pairs={"ds": 6},
        ),
    ]
    summary, confusions = summarize_runs(runs, labels, ["a", "b", "c"], bootstrap_resamples=200)
    # run 0: test [0, 2, 4] before 3/3, after 3/3; run 1: test [1, 3, 5] before 0/3, after 3/3
    assert summary.before.accuracy == pytest.approx(0.5)
    assert summary.after.accuracy == pytest.approx(1.0)
    assert summary.gain.accuracy_spread.std == pytest.approx(np.std([0, 1], ddof=1))
    assert summary.before.accuracy_all == pytest.approx(0.5)
    assert summary.before.per_class == {"a": 0.5, "b": 0.5, "c": 0.5}
    mc = summary.paired_test.mcnemar
    assert (mc.n, mc.only_after, mc.only_before) == (6, 3, 0)
    assert summary.curation.pairs["ds"].mean == 5
    assert confusions["before"].sum() == 6 and np.trace(confusions["after"]) == 6
    assert [r.after_accuracy for r in summary.runs] == [1.0, 1.0]


@pytest.fixture
def tiny_task(tmp_path):
    """A 3-class folder target (4 clips each) and a 12-clip captioned corpus of tones."""
    target = tmp_path / "target"
    for c, (name, freq) in enumerate([("dog_bark", 300), ("rain", 900), ("siren", 2000)]):
        for i in range(4):
            write_tone(target / name / f"{i}.wav", freq * (1 + 0.05 * i), noise=0.05 * c, seed=i)
    corpus = write_tiny_corpus(tmp_path / "corpus")
    return target, corpus


def test_improve_end_to_end_cli(tiny_clap_dir, tiny_task, tmp_path):
    import json

    from claptune import load_model
    from claptune.cli import main

    target, corpus = tiny_task
    out = tmp_path / "run"
    code = main(
        [
            "improve",
            "--model",
            str(tiny_clap_dir),
            "--target",
            "folder",
            "--root",
            str(target),
            "--corpus",
            str(corpus),
            "--corpus-holdout",
            "0.25",
            "--out",
            str(out),
            "--splits",
            "2",
            "--seeds",
            "1",
            "--methods",
            "ds,pseudo",
            "--threshold",
            "ds=q0.5",
            "--template",
            "default",
            "--train",
            "epochs=1",
            "--train",
            "batch_size=4",
            "--train",
            "num_workers=0",
            "--audio-samples",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    text = (out / "report.json").read_text()
    report = json.loads(text)
    # the file is the typed Report's JSON, and reads back into it exactly
    from claptune.report import Report

    typed = Report.read(out / "report.json")
    assert typed.to_json() == text and typed.before.accuracy == report["before"]["accuracy"]
    for side in ("before", "after"):
        assert 0.0 <= report[side]["accuracy"] <= 1.0
        assert set(report[side]["per_class"]) == {"dog_bark", "rain", "siren"}
        assert "std" in report[side]["accuracy_spread"]
    assert report["n_runs"] == 2 and report["seeds"] == [0]
    assert {"mcnemar", "bootstrap"} <= set(report["paired_test"])
    assert report["forgetting"]["n_pairs"] == 3
    assert set(report["forgetting"]["before"]) == {"a2t_R@1", "a2t_R@5", "t2a_R@1", "t2a_R@5"}
    assert report["curation"]["pairs"]["ds"]["mean"] == 5  # ds=q0.5 keeps half of 9 captions
    # transfer check: the held-out captions naming one class ("rain falling 7"; "a dog
    # barking" does not name "dog_bark": "barking" is not "bark")
    held_captions = [
        line.split(",")[1]
        for line in (corpus / "manifest.csv").read_text().splitlines()[1:]
        if str(corpus / line.split(",")[0]) in report["forgetting"]["held_out_audio"]
    ]
    named = [c for c in held_captions if c.startswith(("rain", "a siren"))]
    tr = report["transfer"]
    assert (tr is None) == (not named)
    if tr is not None:
        assert tr["n_clips"] == len(named) and 0.0 <= tr["before"]["accuracy"] <= 1.0
        assert tr["after"]["accuracy"]["n"] == 2
        assert "Transfer check" in (out / "report.md").read_text()
    assert report["config"]["methods"] == ["ds", "pseudo"]

    # the recorded splits partition the clips, and no test clip was curated in split 0
    items = report["target"]["items"]
    test0 = {items[i] for i in report["splits"][0]["test"]}
    assert len(report["splits"][0]["adapt"]) + len(test0) == 12
    import csv

    with (out / "pairs_split0.csv").open() as f:
        curated_audio = {row["audio"] for row in csv.DictReader(f)}
    assert curated_audio and not curated_audio & test0
    held_out = set(report["forgetting"]["held_out_audio"])
    assert not curated_audio & held_out

    model = load_model(out / "model")
    emb = encode_text(model, ["a dog barking"], progress=False)
    assert emb.shape == (1, 16)
    # its class head, fitted on every clip, goes with it and is named in its card
    assert (
        model.class_head.n_clips == report["target"]["n_clips"] and model.class_head.weight == 0.5
    )
    card_text = (out / "model" / "README.md").read_text()
    assert "class_head.safetensors: audio prototypes of 3 classes" in card_text
    assert "model.class_head.classifier(text_classifier, class_names)" in card_text
    # no RUN/student unless asked for (--keep-student), whichever model the guard saved
    assert report["student_dir"] is None and not (out / "student").exists()
    from huggingface_hub import ModelCard  # the model card: what made it, and its numbers

    card = ModelCard.load(out / "model" / "README.md").data
    assert card.claptune["made_by"] == "claptune improve"
    assert card.claptune["curation"] == ["ds", "pseudo"]
    assert card.claptune["loss"] == report["config"]["loss"]
    assert card.datasets is None  # a folder target and a local corpus: no Hub ids
    scores = {r.metric_name: r.metric_value for r in card.eval_results}
    assert scores == {
        "zero-shot accuracy (before)": round(report["runs"][0]["before_accuracy"], 4),
        "zero-shot accuracy (after)": round(report["runs"][0]["after_accuracy"], 4),
    }
    assert (out / "report.html").stat().st_size > 0 and (out / "report.md").is_file()

    # pseudo-label precision of split 0, scored after the run: recount it from the pairs file
    # (a folder target's true class is the clip's folder name)
    with (out / "pairs_split0.csv").open() as f:
        pseudo = [r for r in csv.DictReader(f) if r["method"] == "pseudo"]
    pp = typed.pseudo_precision
    assert pp is not None and pp.split == 0 and pp.methods == ["pseudo"]
    assert set(pp.per_class) == {"dog_bark", "rain", "siren"}
    assert pp.n == len(pseudo) > 0
    assert pp.correct == sum(Path(r["audio"]).parent.name == r["class"] for r in pseudo)
    html = (out / "report.html").read_text()
    assert "Pseudo-label precision per class" in html
    # --audio-samples 2 caps the players at 2 in all (each of a different class)
    heard = re.findall(r'<tr><td>([^<]*)</td><td><audio controls preload="none"', html)
    assert len(heard) == 2 and len(set(heard)) == 2


class _SplitToy:
    """A tiny model with a frozen-feature split: features = frame energies, heads = Linear."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        from claptune.models.base import AudioTextModel

        class Toy(AudioTextModel):
            backend = "toy"
            supports_feature_cache = True
            sample_rate = 8000
            clip_samples = 4000

            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.audio_proj = nn.Linear(8, 4)
                self.text_proj = nn.Linear(3, 4)
                self.feature_calls = 0

            def audio_features(self, waveforms):
                self.feature_calls += len(waveforms)
                frames = waveforms.reshape(len(waveforms), 8, -1)
                return frames.pow(2).mean(dim=2)

            def text_features(self, texts):
                return torch.tensor(
                    [[len(t), t.count("a"), t.count(" ")] for t in texts], dtype=torch.float32
                )

            def audio_head(self, features):
                return nn.functional.normalize(self.audio_proj(features), dim=-1)

            def text_head(self, features):
                return nn.functional.normalize(self.text_proj(features), dim=-1)

            def audio_embeddings(self, waveforms):
                return self.audio_head(self.audio_features(waveforms))

            def text_embeddings(self, texts):
                return self.text_head(self.text_features(texts))

            @property
            def logit_scale(self):
                return torch.tensor(10.0)

            def projection_parameters(self):
                return [*self.audio_proj.parameters(), *self.text_proj.parameters()]

            def save(self, directory):
                raise NotImplementedError

            @classmethod
            def load(cls, directory, **kwargs):
                raise NotImplementedError

            def identity(self):
                return {"backend": "toy"}

        return Toy()


def test_feature_store_matches_encode_audio_and_persists(tmp_path):
    from claptune.embed import encode_audio, encode_text
    from claptune.features import FeatureStore

    model = _SplitToy.build().eval()
    clips = [
        write_tone(tmp_path / f"c{i}.wav", 200 + 100 * i, seconds=0.3 + 0.4 * i, rate=8000)
        for i in range(4)
    ]  # one to three windows each
    store = FeatureStore(model, cache_dir=tmp_path / "cache", progress=False)
    kept, failed = store.add_clips([*clips, tmp_path / "missing.wav"], on_error="skip")
    assert kept.tolist() == [0, 1, 2, 3] and failed[0][0].endswith("missing.wav")
    want = encode_audio(model, clips, progress=False).embeddings
    np.testing.assert_allclose(store.embed_audio(model, clips), want, atol=1e-6)
    np.testing.assert_allclose(
        store.embed_text(model, ["a dog", "rain"]),
        encode_text(model, ["a dog", "rain"], progress=False),
        atol=1e-6,
    )

    # a second store over the same folder reads the features back instead of computing them
    again = FeatureStore(model, cache_dir=tmp_path / "cache", progress=False)
    calls = model.feature_calls  # after the key's probe
    again.add_clips(clips)
    assert model.feature_calls == calls
    np.testing.assert_allclose(again.embed_audio(model, clips), want, atol=1e-6)

    # fit's fixed crop is every clip's first window: served from the stored windows
    import torch

    from claptune.audio import fixed_window, load_audio

    first = torch.from_numpy(np.stack([fixed_window(load_audio(c, 8000), 4000) for c in clips]))
    expected = model.audio_features(first)
    calls = model.feature_calls
    torch.testing.assert_close(again.fixed_audio(clips), expected)
    assert model.feature_calls == calls
    # at most two windows a clip, evenly spread: the first and the last
    two = again.clip_windows(clips, max_windows=2)
    assert [len(t) for t in two] == [1, 2, 2, 2] and model.feature_calls == calls


def test_config_rejects_bad_curation_and_train_overrides():
    with pytest.raises(ClaptuneError, match="curation settings"):
        ImproveConfig(corpus="/x", curation={"ds_treshold": 0.7})
    with pytest.raises(ClaptuneError, match="ds_threshold"):
        ImproveConfig(corpus="/x", curation={"ds_threshold": "q2"})
    with pytest.raises(ClaptuneError, match="training override"):
        ImproveConfig(corpus="/x", train={"epoch": 3})
    with pytest.raises(ClaptuneError):
        ImproveConfig(corpus="/x", train={"epochs": 0})


def test_improve_default_model_trains_heads_on_cached_features(tiny_task, tmp_path):
    """The frozen-feature path with the embedded model's architecture (random heads): only
    the heads change, the teacher's own pretraining hold-out is the forgetting set."""
    import json

    import torch

    from claptune import load_model
    from claptune.cli import main
    from claptune.models.default import DefaultModel

    target, corpus = tiny_task
    torch.manual_seed(0)
    teacher = DefaultModel(metadata={"heldout_ids": ["audio/0.wav", "audio/5.wav", "audio/7.wav"]})
    teacher.save(tmp_path / "teacher")
    out = tmp_path / "run"
    code = main(
        [
            "improve",
            "--model",
            str(tmp_path / "teacher"),
            "--target",
            "folder",
            "--root",
            str(target),
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--splits",
            "1",
            "--seeds",
            "1",
            "--template",
            "default",
            "--train",
            "epochs=2",
            "--train",
            "batch_size=4",
            "--train",
            "num_workers=0",
            "--audio-samples",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--guard-fraction",
            "0",
            "--quiet",
        ]
    )  # improve's default curation (pseudo_refined) and loss (hard); the guard off (with 12
    # clips its slice would hold 2, on which no lead is beyond chance: the teacher would be saved)
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["methods"] == ["pseudo_refined"] and report["config"]["loss"] == "hard"
    # q0.5 keeps the adaptation clips at or above the lower median sureness: 4 of 6
    assert report["curation"]["pairs"]["pseudo_refined"]["mean"] == 4
    with (out / "pairs_split0.csv").open() as f:
        import csv

        rows = list(csv.DictReader(f))
    test0 = {report["target"]["items"][i] for i in report["splits"][0]["test"]}
    assert {r["method"] for r in rows} == {"pseudo_refined"} and not {
        r["audio"] for r in rows
    } & test0
    assert report["train"]["head_only"] is True and report["train"]["trainable"] == "projections"
    held = sorted(report["forgetting"]["held_out_audio"])
    assert held == sorted(str(corpus / "audio" / f"{i}.wav") for i in (0, 5, 7))
    assert report["forgetting"]["held_out_source"] == "the teacher's own pretraining hold-out"
    assert any((tmp_path / "cache" / "features").rglob("part-*.npz"))

    # the saved model: trained after the runs on every clip (no guard slice: --guard-fraction 0)
    saved = report["model_run"]
    assert saved["n_clips"] == len(report["target"]["items"]) and not saved["guard"]
    assert saved["saved"] == "student"  # without a guard decision the student is saved
    student = load_model(out / "model")
    heads_before, heads_after = teacher.head_state_dict(), student.head_state_dict()
    assert any(not torch.equal(heads_before[k], heads_after[k]) for k in heads_before)
    # the model folder records its fine-tune, with no path of this machine in it
    assert teacher.metadata.get("fine_tunes") is None
    (entry,) = student.metadata["fine_tunes"]
    assert entry["by"] == "claptune train" and entry["config"]["loss"] == "hard"
    assert entry["n_curated_pairs"] == saved["n_pairs"] > 0 and entry["steps"] >= 1
    assert str(tmp_path) not in (out / "model" / "default_model.json").read_text()
    # a second fine-tune appends a second entry
    from claptune.train import TrainConfig, fit

    fit(
        student,
        out / "pairs_split0.csv",
        TrainConfig(epochs=1, batch_size=4, num_workers=0, progress=False, val_fraction=0.0),
        out_dir=tmp_path / "again",
    )
    again = load_model(tmp_path / "again" / "model")
    assert [e["by"] for e in again.metadata["fine_tunes"]] == ["claptune train"] * 2
    assert again.metadata["heldout_ids"] == teacher.metadata["heldout_ids"]


def test_ablate_cli_writes_table_on_shared_splits(tiny_clap_dir, tiny_task, tmp_path, monkeypatch):
    import json

    from claptune.cli import main

    target, corpus = tiny_task
    out = tmp_path / "ablation"
    code = main(
        [
            "ablate",
            "--model",
            str(tiny_clap_dir),
            "--target",
            "folder",
            "--root",
            str(target),
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--splits",
            "2",
            "--seeds",
            "1",
            "--methods",
            "ds,pseudo,ds+pseudo_refined",
            "--losses",
            "soft",
            "--no-replay-only",
            "--template",
            "default",
            "--threshold",
            "ds=q0.5",
            "--train",
            "epochs=1",
            "--train",
            "batch_size=4",
            "--train",
            "num_workers=0",
            "--quiet",
        ]
    )
    assert code == 0
    result = json.loads((out / "ablation.json").read_text())
    names = [row["name"] for row in result["rows"]]
    assert names == ["baseline (teacher)", "ds / soft", "pseudo / soft", "ds+pseudo_refined / soft"]
    assert result["rows"][-1]["methods"] == ["ds", "pseudo_refined"]
    base = result["rows"][0]
    assert base["gain"]["mean"] == 0.0 and base["after"] == base["before"]
    # every row is scored on the same splits, so "before" is identical across rows
    assert all(row["before"] == base["before"] for row in result["rows"])
    text = (out / "ablation.md").read_text()
    blocks = text.split("\n\n")
    table, peers = blocks[1], blocks[4]

    def rows_of(block: str) -> int:
        return sum(line.startswith("| ") for line in block.splitlines())

    assert rows_of(table) == 5  # header + 4 rows
    # the peers side by side: the teacher's training-free pipelines once (every transduction
    # and the class head), then each trained row's student without and with its class head,
    # with transduction, and guarded; gains with two-stage intervals
    from claptune.evaluate.transductive import TRANSDUCTIONS

    assert rows_of(peers) == 1 + len(TRANSDUCTIONS) + 1 + 3 * 4
    assert "| teacher + claptune |" in peers and "| ds / soft: student + transduction |" in peers
    assert "| teacher + class head |" in peers and "| ds / soft: student, no class head |" in peers
    for row in result["rows"][1:]:
        assert row["two_stage"]["n_units"] == 2
        p = row["pipelines"]["teacher"]
        assert p["gain"]["difference"] == 0.0 and p["trained"] is False
        assert row["pipelines"]["student"]["accuracy"] == pytest.approx(row["after"]["mean"])
        # one pooled estimator for a pipeline's figures and its gains: the columns subtract
        for q in row["pipelines"].values():
            assert q["accuracy"] - p["accuracy"] == pytest.approx(q["gain"]["difference"])
            assert q["class_mean_accuracy"] - p["class_mean_accuracy"] == pytest.approx(
                q["class_mean_gain"]["difference"]
            )
        assert set(row["guard"]) >= {"kept_student", "right"}
    assert "pooled McNemar" in text.split("\n\n")[-1] and "not valid" in text.split("\n\n")[-1]
    # every student's class scores: their argmax is what the rows scored
    from claptune.data import load_dataset

    labels = np.asarray(load_dataset("folder", root=str(target)).labels)
    scores = np.load(out / "scores.npz")
    assert scores["teacher"].shape == (len(labels), 3)
    # the files alone say which clip each index is and its class
    assert (scores["labels"] == labels).all() and len(result["items"]) == len(labels)
    assert result["class_names"] == load_dataset("folder", root=str(target)).class_names
    for i, row in enumerate(result["rows"][1:], start=1):
        runs = scores[f"row{i}"].astype(np.float32)
        assert runs.shape == (2, len(labels), 3)
        acc = [
            np.mean(runs[k].argmax(1)[s["test"]] == labels[s["test"]])
            for k, s in enumerate(result["splits"])
        ]
        assert np.mean(acc) == pytest.approx(row["after"]["mean"])
        assert 0.0 <= row["label_free"] <= 1.0
        assert row["label_free"] == row["label_free_signals"]["pseudo_agreement"]
    assert result["picks"]["signal"] == "pseudo_agreement"
    assert result["picks"]["label_free"] in names[1:]

    # the selection benchmark recomputes every signal from scores.npz and the teacher's view
    # alone (it stops if pseudo_agreement differs from what ablate recorded), then scores picks
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_selection import judge, target_rows

    _, rows = target_rows(out)
    assert [r["name"] for r in rows] == names[1:]
    verdict = judge(rows)
    assert verdict["label_pick"] in names[1:]
    got = verdict["signals"]["pseudo_agreement"]
    assert got["pick"] == result["picks"]["label_free"] and got["regret"] >= 0.0
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_reads_root_from_flag_else_the_data_folder_else_downloads(monkeypatch, tmp_path):
    from claptune.cli import build_parser
    from claptune.cli.demo import demo_config

    parser = build_parser()
    monkeypatch.delenv("CLAPTUNE_DATA", raising=False)
    cfg = demo_config(parser.parse_args(["demo", "--corpus", str(tmp_path)]))
    assert (cfg.model, cfg.target, cfg.root, cfg.download) == ("default", "esc50", None, True)
    defaults = ImproveConfig.__dataclass_fields__  # demo runs improve's own defaults
    assert (cfg.methods, cfg.loss, cfg.n_splits, cfg.n_seeds) == (
        defaults["methods"].default,
        defaults["loss"].default,
        3,
        3,
    )
    # $CLAPTUNE_DATA is not demo's own: the data folder every command searches (test_data.py)
    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "esc"))
    cfg = demo_config(parser.parse_args(["demo", "--corpus", str(tmp_path)]))
    assert (cfg.root, cfg.download) == (None, True)
    cfg = demo_config(parser.parse_args(["demo", "--root", "/x", "--corpus", str(tmp_path)]))
    assert cfg.root == "/x"


def test_transfer_check_matches_captions_naming_one_class():
    from claptune.improve.transfer import match_captions, summarize_transfer

    classes = ["dog", "chirping_birds", "door_wood_knock", "rain"]
    captions = [
        "a dog barking",
        "birds chirping at dawn",
        "a dog barking in the rain",
        "someone knocks on a wooden door",
        "heavy rain on a roof",
        "a car passing",
        "Dogs howling.",
    ]
    rows, labels = match_captions(captions, classes)
    # "dog ... rain" names two classes; "knocks on a wooden door" lacks the word "wood"
    assert rows.tolist() == [0, 1, 4, 6] and labels.tolist() == [0, 1, 3, 0]
    out = summarize_transfer(
        labels,
        classes,
        np.array([0, 0, 3, 0]),
        [np.array([0, 1, 3, 0]), np.array([0, 1, 3, 1])],
        [captions[i] for i in rows],
    )
    assert out.n_clips == 4 and out.clips_per_class == {"dog": 2, "chirping_birds": 1, "rain": 1}
    assert out.before.accuracy == 0.75
    assert out.before.class_mean_accuracy == pytest.approx((1 + 0 + 1) / 3)
    assert out.after.accuracy.mean == pytest.approx((1.0 + 0.75) / 2)
    assert out.after.class_mean_accuracy.mean == pytest.approx((1.0 + 2.5 / 3) / 2)
    assert summarize_transfer(np.zeros(0, np.int64), classes, np.zeros(0), [], []) is None


def test_curate_cli_and_improve_curate_the_same_pairs(tiny_clap_dir, tiny_task, tmp_path):
    """One curation path: `claptune curate` given the roles improve assigns for a split
    (adaptation clips as unpaired and target audio, the corpus, the class names) keeps the
    same pairs as improve, with the same default thresholds and prompts."""
    from claptune.cli import main
    from claptune.curation import read_pairs
    from claptune.improve.config import ImproveConfig
    from claptune.improve.workspace import Workspace

    target, corpus = tiny_task
    methods = ("du", "ds", "ads", "pseudo", "pseudo_refined")
    config = ImproveConfig(
        model=str(tiny_clap_dir),
        target="folder",
        root=str(target),
        corpus=str(corpus),
        corpus_holdout=0.0,
        n_splits=1,
        n_seeds=1,
        methods=methods,
        cache_dir=None,
    )  # improve's default prompts
    ws = Workspace(config, tmp_path / "ws", progress=False)
    split = ws.splits[0]
    expected = ws.curate(split, methods)
    adapt = [ws.items[i] for i in split.adapt]
    (tmp_path / "captions.txt").write_text("\n".join(ws.replay_text) + "\n")
    out = tmp_path / "cli"
    assert (
        main(
            [
                "curate",
                "--method",
                ",".join(methods),
                "--model",
                str(tiny_clap_dir),
                "--audio",
                *adapt,
                "--target-audio",
                *adapt,
                "--text",
                str(tmp_path / "captions.txt"),
                "--corpus",
                str(corpus),
                "--classes",
                ",".join(ws.class_names),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    got = read_pairs(out / "pairs.csv")

    def rows(pairs):
        return {
            (a, t, m, c): s
            for a, t, s, m, c in zip(
                pairs.audio, pairs.text, pairs.score, pairs.method, pairs.classes, strict=True
            )
        }

    want, have = rows(expected), rows(got)
    assert set(expected.method) == set(methods)  # every method kept something
    assert set(have) == set(want)
    for key, score in want.items():
        assert have[key] == pytest.approx(score, abs=1e-5)

    # improve scores with the public zero-shot classifier, not a copy of it
    from claptune.evaluate.zeroshot import predict, text_classifier

    classifier = text_classifier(ws.teacher, ws.class_names, ws.templates)
    np.testing.assert_array_equal(ws.classifier(ws.teacher), classifier)
    np.testing.assert_array_equal(ws.pred_before, predict(ws.target_emb, classifier))


@pytest.mark.parametrize("prior", ["uniform", "em"])
def test_target_labels_only_score(tiny_task, tmp_path, monkeypatch, prior):
    """Relabel the target at random: the pairs, the estimated class shares, the splits and the
    trained student stay bit for bit the same; only the scores move. Labels are read to score,
    never on the path that picks pairs, priors, thresholds, epochs or the kept model."""
    import json

    import torch

    import claptune.data
    from claptune import load_model
    from claptune.cli import main
    from claptune.evaluate.prototypes import ClassHead
    from claptune.models.default import DefaultModel

    target, corpus = tiny_task
    torch.manual_seed(0)
    DefaultModel().save(tmp_path / "teacher")
    real_load = claptune.data.load_dataset

    def run(name: str) -> dict:
        out = tmp_path / name
        code = main(
            [
                "improve",
                "--model",
                str(tmp_path / "teacher"),
                "--target",
                "folder",
                "--root",
                str(target),
                "--corpus",
                str(corpus),
                "--out",
                str(out),
                "--splits",
                "2",
                "--seeds",
                "1",
                "--template",
                "default",
                "--train",
                "epochs=2",
                "--train",
                "batch_size=4",
                "--train",
                "num_workers=0",
                "--audio-samples",
                "0",
                "--curation",
                f"pseudo_refined_prior={prior}",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--quiet",
            ]
        )
        assert code == 0
        report = json.loads((out / "report.json").read_text())
        report["_pairs"] = (out / "pairs_split0.csv").read_text()
        report["_heads"] = load_model(out / "model").head_state_dict()
        head = ClassHead.load(out / "model")
        report["_class_head"] = (head.class_names, head.weight, head.n_clips, head.means.tobytes())
        return report

    real = run("real")

    def relabelled(*args, **kwargs):
        ds = real_load(*args, **kwargs)
        ds.labels = (ds.labels + 1) % len(ds.class_names)  # every clip gets another class
        return ds

    monkeypatch.setattr(claptune.data, "load_dataset", relabelled)
    fake = run("fake")
    assert real["config"]["split"] == "auto" and real["splits"][0]["strategy"] == "random"
    assert real["splits"] == fake["splits"]
    assert real["_pairs"] == fake["_pairs"] and real["_pairs"].count("\n") > 1
    est = [s["estimated"] for s in real["priors"]["splits"]]
    assert est == [s["estimated"] for s in fake["priors"]["splits"]]
    assert real["priors"]["method"] == prior
    assert all(torch.equal(real["_heads"][k], fake["_heads"][k]) for k in real["_heads"])
    assert real["_class_head"] == fake["_class_head"]  # the saved class head reads none either
    assert real["_class_head"][2] > 0
    # what the labels do change: the true shares the estimate is scored against
    assert [s["true"] for s in real["priors"]["splits"]] != [
        s["true"] for s in fake["priors"]["splits"]
    ]
    assert real["before"]["class_mean_accuracy"] is not None
    assert real["paired_test"]["class_mean_bootstrap"]["n_units"] > 0
    # the label-free selection signals read no label either
    assert "pseudo_agreement" in real["label_free"]
    assert real["label_free"] == fake["label_free"]
    # nor do the guard (per run and for the saved model) and the saved model's choice
    assert [r["guard"] for r in real["runs"]] == [r["guard"] for r in fake["runs"]]
    assert all("keep_student" in r["guard"] for r in real["runs"])
    assert real["model_run"] == fake["model_run"] and real["model_run"]["guard"]
    # what the labels change there: the scored accuracy of every pipeline
    assert set(real["transductive"]["rows"]) == set(fake["transductive"]["rows"])


def test_corpus_none_means_no_corpus():
    """--corpus none (or '') runs without a paired corpus, as --help says."""
    assert ImproveConfig(corpus="none").corpus is None
    assert ImproveConfig(corpus="").corpus is None
    with pytest.raises(ClaptuneError, match="need a paired corpus"):
        ImproveConfig(corpus="none", methods=("ds",))


def test_transduction_runs_over_every_clip_and_is_kept_on_the_guard_clips(
    tiny_clap_dir, tiny_task, tmp_path
):
    """The peers and teacher + transduction see the pool and the test part together (no label
    read), and are recorded on the split's guard clips only: the label-free pipelines a user
    labelling the whole collection would run, scored on the test part."""
    from claptune.evaluate.transductive import TRANSDUCTIONS, transduce
    from claptune.improve.config import ImproveConfig
    from claptune.improve.workspace import Workspace

    target, _ = tiny_task
    config = ImproveConfig(
        model=str(tiny_clap_dir), target="folder", root=str(target), corpus=None, n_splits=1
    )
    with pytest.warns(UserWarning):
        ws = Workspace(config, tmp_path / "ws", progress=False)
    split = ws.splits[0]
    clips = split.guard_clips
    prompts = ws.prompt_embeddings(ws.teacher)
    scale = float(ws.teacher.logit_scale.detach())
    peers = ws.peers(split)
    over_all = {m: transduce(ws.target_emb, prompts, scale, m).argmax(1) for m in TRANSDUCTIONS}
    over_test = {
        m: transduce(ws.target_emb[clips], prompts, scale, m).argmax(1) for m in TRANSDUCTIONS
    }
    for m in TRANSDUCTIONS:
        assert np.array_equal(peers[m][clips], over_all[m][clips]), m
        assert (np.delete(peers[m], clips) == -1).all(), m  # only the guard clips are recorded
    # on this task the two scopes disagree somewhere, so the check above can fail
    assert any(not np.array_equal(over_all[m][clips], over_test[m]) for m in TRANSDUCTIONS)
    np.testing.assert_array_equal(
        ws.teacher_transduced(), transduce(ws.target_emb, prompts, scale, config.transduction)
    )
