"""claptune adapt: unlabeled clips + class names -> an adapted model and a label-free report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from claptune.embed import encode_text
from claptune.errors import ClaptuneError
from conftest import write_tiny_corpus, write_tone

CLASSES = [("dog_bark", 300), ("rain", 900), ("siren", 2000)]


@pytest.fixture(scope="module")
def unlabeled_task(tmp_path_factory):
    """Unlabeled clips in one folder tree (no class folders, no label file anywhere), a class
    names file, a captioned corpus, and a labelled copy of the clips for --eval."""
    tmp_path = tmp_path_factory.mktemp("adapt_task")
    audio, labelled = tmp_path / "recordings", tmp_path / "labelled"
    for c, (name, freq) in enumerate(CLASSES):
        for i in range(4):
            # nested, with names that say nothing of the class
            clip = write_tone(
                audio / f"day{i % 2}" / f"rec{c}{i}.wav",
                freq * (1 + 0.05 * i),
                noise=0.05 * c,
                seed=i,
            )
            (labelled / name).mkdir(parents=True, exist_ok=True)
            (labelled / name / clip.name).symlink_to(clip)
    (audio / "day0" / "broken.wav").write_bytes(b"not audio")  # --on-error skip drops it
    classes = tmp_path / "classes.txt"
    classes.write_text("# what my recordings hold\ndog_bark\n\nrain\nsiren\n")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    return audio, classes, corpus, labelled


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """The default model's architecture with random heads (it trains on cached features, fast)
    and a feature cache the module's runs share."""
    import torch

    from claptune.models.default import DefaultModel

    folder = tmp_path_factory.mktemp("adapt_teacher")
    torch.manual_seed(0)
    DefaultModel(metadata={"heldout_ids": ["audio/0.wav", "audio/1.wav", "audio/5.wav"]}).save(
        folder / "model"
    )
    return folder / "model", folder / "cache"


def _argv(teacher, audio, classes, corpus, out, *extra):
    model, cache = teacher
    return [
        "adapt",
        "--model",
        str(model),
        "--audio",
        str(audio),
        "--classes",
        str(classes),
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--template",
        "default",
        "--train",
        "epochs=2",
        "--train",
        "batch_size=4",
        "--train",
        "num_workers=0",
        "--cache-dir",
        str(cache),
        "--on-error",
        "skip",
        "--quiet",
        *extra,
    ]


def test_adapt_end_to_end_cli(unlabeled_task, teacher, tmp_path, capsys):
    import torch

    from claptune import load_model
    from claptune.cli import main
    from claptune.improve.adapt import teacher_pseudo_labels
    from claptune.improve.config import ImproveConfig
    from claptune.improve.splits import whole_pool_split
    from claptune.report.schema import AdaptReport

    audio, classes, corpus, labelled = unlabeled_task
    out = tmp_path / "run"
    # every clip adapts (no guard slice), so that the counts below cover all 12 clips
    assert main(_argv(teacher, audio, classes, corpus, out, "--guard-fraction", "0")) == 0
    printed = capsys.readouterr().out
    assert "teacher/student agreement" in printed.lower() and "report:" in printed

    for name in (
        "report.json",
        "report.md",
        "report.html",
        "pairs.csv",
        "confidence.png",
        "margin.png",
        "classes.png",
        "model/README.md",
        "model/adapt_config.json",
    ):
        assert (out / name).is_file(), name
    for name in ("model/README.md", "model/adapt_config.json"):  # what `claptune push` uploads
        assert str(tmp_path) not in (out / name).read_text(), name
    text = (out / "report.json").read_text()
    report = AdaptReport.read(out / "report.json")
    assert report.to_json() == text  # typed, and reads back exactly
    assert report.target.n_clips == 12 and report.target.class_names == [
        "dog_bark",
        "rain",
        "siren",
    ]
    assert [f["item"] for f in report.failed_clips] == [str(audio / "day0" / "broken.wav")]
    # improve's defaults: pseudo_refined curation, the hard loss, heads on cached features
    assert report.methods == ["pseudo_refined"] and report.loss == "hard"
    assert report.train["trainable"] == "projections" and report.train_result["steps"] > 0
    assert report.evaluation is None  # nothing labelled was named

    # the class shares curation balanced to (uniform by default), per class and in priors
    assert report.priors.method == "uniform"
    shares = [row.share for row in report.classes.values()]
    assert shares == pytest.approx([1 / 3] * 3)
    # the pseudo-label distribution: every clip has one refined label; curated pairs per class
    # match pairs.csv
    rows = report.classes.values()
    assert sum(r.pseudo_labels for r in rows) == 12 == sum(r.teacher for r in rows)
    assert sum(r.student for r in rows) == 12
    with (out / "pairs.csv").open() as f:
        pairs = list(csv.DictReader(f))
    assert sum(r.curated for r in rows) == len(pairs) == report.n_pairs["total"] > 0
    for name, row in report.classes.items():
        assert row.curated == sum(p["class"] == name for p in pairs)
    # the histograms count every clip, the curated ones are those at or above the cut
    conf = report.confidence
    assert sum(conf.counts) == 12 and sum(conf.counts_curated) == len(pairs)
    assert len(conf.edges) == len(conf.counts) + 1 and conf.threshold is not None
    assert report.margin.threshold is None and sum(report.margin.counts) == 12
    # the pseudo-labels in the report are the labels curation chose from
    from claptune.improve.adapt import unlabeled_clips
    from claptune.improve.workspace import Workspace

    config = ImproveConfig.from_dict(report.config)
    ws = Workspace(config, tmp_path / "ws", progress=False, target=unlabeled_clips(config))
    adapted = whole_pool_split(len(ws.items), config.seed, config.guard_fraction).adapt
    pred, confidence, _ = teacher_pseudo_labels(ws, adapted)
    index = {item: i for i, item in enumerate(ws.items)}
    for p in pairs:
        i = index[p["audio"]]
        assert ws.class_names[pred[i]] == p["class"]
        assert float(p["score"]) == pytest.approx(confidence[i], abs=1e-6)

    # agreement: a share of the clips, per class among the teacher's predictions
    ag = report.agreement
    assert ag.n_clips == 12 and 0.0 <= ag.share <= 1.0
    unchanged = sum(r.unchanged * r.teacher for r in rows if r.unchanged is not None)
    assert unchanged == pytest.approx(ag.share * 12)
    # forgetting check on the teacher's own hold-out, and the label-free transfer check
    assert report.forgetting.held_out_source == "the teacher's own pretraining hold-out"
    assert sorted(report.forgetting.held_out_audio) == sorted(
        str(corpus / "audio" / f"{i}.wav") for i in (0, 1, 5)
    )
    # held out: "a dog barking 0" (no class: "barking" is not "bark"), "rain falling 1 / 5"
    assert report.transfer.n_clips == 2 and report.transfer.clips_per_class == {"rain": 2}
    assert "transfer_class_mean" in report.label_free
    # the selection signal ablate picks by, over every clip (adapt holds none out)
    assert 0.0 <= report.label_free["pseudo_agreement"] <= 1.0
    assert "pseudo_agreement_held_out" not in report.label_free

    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "Per class" in md and "Forgetting and transfer checks" in md
    assert "transfer check accuracy (2 clips; one clip moves it 50 points)" in md
    agree = f"{100 * report.label_free['pseudo_agreement']:.1f} % of clips"
    assert f"Student/refined pseudo-label agreement: {agree}" in md
    # one player per class: its curated pair, or the teacher's surest clip where it has none
    assert html.count("<audio ") == report.target.n_classes == 3

    student = load_model(out / "model")
    assert encode_text(student, ["a dog barking"], progress=False).shape[0] == 1
    heads = load_model(teacher[0]).head_state_dict()
    assert any(not torch.equal(heads[k], student.head_state_dict()[k]) for k in heads)
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "model" / "README.md").data
    assert card.claptune["made_by"] == "claptune adapt"
    # its class head, fitted on every clip without a label, goes with it
    head = student.class_head
    assert head.class_names == tuple(report.target.class_names) and head.n_clips == 12
    assert "class_head.safetensors" in (out / "model" / "README.md").read_text()
    assert (
        card.claptune["curation"] == ["pseudo_refined"] and card.datasets is None
    )  # local: in the text

    # --eval scores teacher and student on a labelled set, and changes nothing else
    out_eval = tmp_path / "run_eval"
    assert (
        main(
            _argv(
                teacher,
                audio,
                classes,
                corpus,
                out_eval,
                "--eval",
                f"folder:{labelled}",
                "--no-save-model",
                "--guard-fraction",
                "0",
            )
        )
        == 0
    )
    scored = json.loads((out_eval / "report.json").read_text())
    ev = scored["evaluation"]
    assert ev["target"] == "folder" and ev["n_clips"] == 12 and ev["n_classes"] == 3
    assert ev["overlap"] == 12  # the labelled copy links to the very clips adapted on
    for side in ("before", "after"):
        assert 0.0 <= ev[side]["accuracy"] <= 1.0 and 0.0 <= ev[side]["class_mean_accuracy"] <= 1.0
    assert ev["bootstrap"]["n_units"] == 12
    plain = json.loads(text)
    for key in ("n_pairs", "classes", "confidence", "agreement", "forgetting", "priors"):
        assert scored[key] == plain[key], key
    assert (out_eval / "pairs.csv").read_text() == (out / "pairs.csv").read_text()
    # the labels of the clips come from no label either
    assert (out_eval / "predictions.csv").read_text() == (out / "predictions.csv").read_text()
    assert not (out_eval / "model").exists()
    assert "class-mean accuracy" in (out_eval / "report.md").read_text()


def test_adapt_user_errors_are_one_line(unlabeled_task, tmp_path, capsys):
    from claptune.cli import main

    audio, classes, corpus, labelled = unlabeled_task
    teacher = (tmp_path / "no-model-needed", tmp_path / "cache")
    dup = tmp_path / "dup.txt"
    dup.write_text("rain\nsiren\nrain\n")
    spelled = tmp_path / "spelled.txt"
    spelled.write_text("church_bells\nsiren\nChurch bells\n")
    cases = [
        (["--classes", str(dup)], "given twice: 'rain'"),
        (["--classes", str(spelled)], "'church_bells' and 'Church bells'"),
        (["--classes", str(tmp_path / "missing.txt")], "class names file not found"),
        (["--eval", "esc51:/x"], "TARGET must be one of"),
        # a missing --eval set is found before the model loads and anything trains
        (["--eval", f"esc50:{tmp_path / 'nowhere'}"], "not found"),
        # a value of the wrong type is one line, not a traceback from deep inside
        (["--train", "lr=abc"], "training override lr: expected float, got 'abc'"),
        # the runs' seeds come from --seed: a training seed override would be ignored
        (["--train", "seed=7"], "--train seed=7 would be ignored"),
    ]
    for extra, message in cases:
        argv = _argv(teacher, audio, classes, corpus, tmp_path / "o")
        if extra[0] == "--classes":
            argv[argv.index("--classes") + 1] = extra[1]
        else:
            argv += extra
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and err.startswith("claptune adapt: error:")


def test_adapt_config_shares_improves_defaults():
    from claptune.improve.config import UNLABELED, ImproveConfig

    config = ImproveConfig.unlabeled(("x/",), ("a", "b"), corpus=None)
    inner, improve = config, ImproveConfig(corpus=None)
    assert (inner.methods, inner.loss, inner.templates, inner.curation, inner.train) == (
        improve.methods,
        improve.loss,
        improve.templates,
        improve.curation,
        improve.train,
    )
    assert (inner.target, inner.audio_per_class, improve.audio_per_class) == (UNLABELED, 1, 2)
    assert ImproveConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ClaptuneError, match="unknown improve config keys"):
        ImproveConfig.unlabeled(["x"], ["a"], labels="y.csv")
    with pytest.raises(ClaptuneError, match="curation settings"):
        ImproveConfig.unlabeled(("x/",), ("a",), curation={"pseudo_refined_prio": "em"})


def test_adapt_balances_to_the_em_prior_when_asked(unlabeled_task, teacher, tmp_path):
    from claptune.cli import main
    from claptune.report.schema import AdaptReport

    audio, classes, corpus, _ = unlabeled_task
    out = tmp_path / "run"
    assert (
        main(
            _argv(
                teacher,
                audio,
                classes,
                corpus,
                out,
                "--curation",
                "pseudo_refined_prior=em",
                "--no-save-model",
            )
        )
        == 0
    )
    report = AdaptReport.read(out / "report.json")
    from claptune.curation import CurationSettings
    from claptune.improve.config import ImproveConfig

    # the config records the typed settings whole: the user's override, every other default
    assert (
        report.priors.method == "em" and report.config["curation"]["pseudo_refined_prior"] == "em"
    )
    assert ImproveConfig.from_dict(report.config).curation == CurationSettings(
        pseudo_refined_prior="em"
    )
    shares = [row.share for row in report.classes.values()]
    assert sum(shares) == pytest.approx(1.0) and shares != pytest.approx([1 / 3] * 3)


def test_adapt_guard_and_predictions(unlabeled_task, teacher, tmp_path, capsys):
    """The default run holds a slice of the clips out of curation, decides on their audio alone
    whether the student beats the teacher, saves the better model and labels every clip."""
    from claptune import load_model
    from claptune.cli import main
    from claptune.evaluate.transductive import PREDICTION_COLUMNS
    from claptune.report.schema import AdaptReport

    audio, classes, corpus, _ = unlabeled_task
    out = tmp_path / "run"
    assert main(_argv(teacher, audio, classes, corpus, out, "--keep-student")) == 0
    printed = capsys.readouterr().out
    assert "Guard:" in printed and "predictions.csv" in printed
    report = AdaptReport.read(out / "report.json")
    split = report.config  # the guard slice is recorded through the workspace's split
    g = report.guard
    assert g["n_clips"] == 2 and isinstance(g["keep_student"], bool)
    for key in ("consistency_student", "consistency_teacher", "agreement_student"):
        assert 0.0 <= g[key] <= 1.0
    assert report.saved == ("student" if g["keep_student"] else "teacher")
    assert split["guard_fraction"] == 0.2
    # the configuration lists what adapt reads: no data set, splits or test parts of improve's,
    # and the cache as an absolute folder
    assert not {"root", "n_splits", "n_seeds", "test_fraction", "split"} & set(split)
    assert Path(split["cache_dir"]).is_absolute()
    saved_config = json.loads((out / "model" / "adapt_config.json").read_text())
    assert "n_splits" not in saved_config and saved_config["guard_fraction"] == 0.2
    # this machine's paths are left out, not cut, so the file passed back with --config
    # takes the defaults or the flags given rather than a folder that exists nowhere
    assert not {"audio", "corpus", "cache_dir"} & set(saved_config)
    from claptune.improve.config import ImproveConfig

    again = ImproveConfig.from_dict({**saved_config, "audio": [str(audio)]})
    assert again.class_names == tuple(report.target.class_names) and again.corpus != "corpus"
    # curation saw only the clips outside the guard slice: 10 of the 12 that decoded
    assert sum(report.confidence.counts) == 10
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == PREDICTION_COLUMNS
    assert len(rows) == 12 and len({r["path"] for r in rows}) == 12
    assert all(r["label"] in ("dog_bark", "rain", "siren") for r in rows)
    assert all(r["runner_up"] != r["label"] for r in rows)
    assert all(float(r["confidence"]) >= float(r["runner_up_confidence"]) for r in rows)
    counts = report.predictions["counts"]
    assert sum(counts.values()) == 12 and report.predictions["model"] == "teacher"
    for name, n in counts.items():
        assert n == sum(r["label"] == name for r in rows)
    # the per-class table: curation's counts over the 10 clips it saw, the labels over all 12
    assert sum(r.teacher for r in report.classes.values()) == 10
    assert {c: r.labelled for c, r in report.classes.items()} == counts
    md = (out / "report.md").read_text()
    assert "the 10 clips curation saw (the guard's 2 clips held out)" in md
    assert "labelled (predictions.csv)" in md and "over all 12 clips" in md
    # the saved model is the one the guard chose: the teacher's heads when it rejected
    saved = load_model(out / "model").head_state_dict()
    heads = load_model(teacher[0]).head_state_dict()
    same = all((saved[k] == heads[k]).all() for k in heads)
    assert same == (report.saved == "teacher")
    # on 2 held-out clips the guard cannot decide: the teacher is RUN/model, and --keep-student
    # writes the fine-tuned student beside it, named in the report and the console
    assert report.saved == "teacher" and report.student_dir == str(out / "student")
    kept = load_model(out / "student").head_state_dict()
    assert not all((kept[k] == heads[k]).all() for k in heads)
    assert (out / "student" / "adapt_config.json").is_file()
    assert "student the guard did not keep" in printed
    assert "saved model (the teacher: the guard did not keep the student)" in printed
    assert "with its class head (class_head.safetensors: audio prototypes of" in printed
    md = (out / "report.md").read_text()
    assert "(--keep-student)" in md and "Saved model (the teacher" in md
    assert "<code>" in (out / "report.html").read_text().split("(--keep-student)")[0][-400:]
    # each folder's card says which model it holds
    assert "did not keep the adapted student" in (out / "model" / "README.md").read_text()
    assert (
        "student the label-free guard did not keep" in (out / "student" / "README.md").read_text()
    )
    # deterministic: the same command gives the same labels
    out2 = tmp_path / "run2"
    assert main(_argv(teacher, audio, classes, corpus, out2, "--no-save-model")) == 0
    assert (out2 / "predictions.csv").read_text() == (out / "predictions.csv").read_text()
    # --labels-from saved: the labels refine the scores of the model the guard kept
    out3 = tmp_path / "run3"
    argv = _argv(teacher, audio, classes, corpus, out3, "--no-save-model", "--labels-from", "saved")
    assert main(argv) == 0
    third = AdaptReport.read(out3 / "report.json")
    assert third.predictions["model"] == third.saved == report.saved
    # without --keep-student no student is written (nor with --no-save-model)
    assert not (out3 / "student").exists() and third.student_dir is None
    # the two flags contradict each other: refused, nothing run
    capsys.readouterr()
    out4 = tmp_path / "run4"
    argv = _argv(teacher, audio, classes, corpus, out4, "--no-save-model", "--keep-student")
    assert main(argv) != 0
    assert "--keep-student" in capsys.readouterr().err and not (out4 / "report.json").exists()


def test_adapt_with_a_datasets_corpus_and_without_any(
    unlabeled_task, teacher, tmp_path, monkeypatch, capsys
):
    """A corpus given as a `datasets` save_to_disk folder replays and runs the checks like its
    manifest twin; a run with no corpus says so in one warning line and in its report."""
    datasets = pytest.importorskip("datasets", reason="the datasets extra: claptune[datasets]")
    from claptune.cli import main
    from claptune.report.schema import AdaptReport

    monkeypatch.setenv("CLAPTUNE_DATA", str(tmp_path / "data"))
    audio, classes, corpus, _ = unlabeled_task
    rows = [line.split(",") for line in (corpus / "manifest.csv").read_text().splitlines()[1:]]
    hf = tmp_path / "hf-corpus"
    datasets.Dataset.from_dict(
        {"audio": [str(corpus / r[0]) for r in rows], "caption": [r[1] for r in rows]}
    ).cast_column("audio", datasets.Audio()).save_to_disk(str(hf))
    out = tmp_path / "hf"
    assert main(_argv(teacher, audio, classes, hf, out, "--no-save-model")) == 0
    report = AdaptReport.read(out / "report.json")
    assert report.forgetting is not None and report.forgetting.n_pairs > 0
    capsys.readouterr()

    bare = tmp_path / "bare"
    argv = _argv(teacher, audio, classes, corpus, bare, "--no-save-model")
    argv[argv.index("--corpus") + 1] = ""
    assert main(argv) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "no paired corpus" in ln]
    assert len(warned) == 1 and warned[0].startswith("claptune adapt: warning: no paired corpus")
    assert AdaptReport.read(bare / "report.json").forgetting is None
    for name in ("report.md", "report.html"):
        assert "forgetting and transfer checks are skipped" in (bare / name).read_text(), name
    html = (bare / "report.html").read_text()
    for cls in ("dog_bark", "rain", "siren"):  # every class can be heard, curated or not
        assert re.search(f"<summary>{cls}: [^<]*</summary><table>.*?<audio controls", html), cls
