"""The report files: JSON summary, Markdown with its figures, and a self-contained HTML page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from claptune.errors import ClaptuneError
from claptune.report import ReportAssets, write_report
from claptune.report.page import preview_encoding
from claptune.report.schema import (
    CurationCounts,
    Forgetting,
    Gain,
    ModelInfo,
    PairedTest,
    Report,
    RunRecord,
    Side,
    TargetInfo,
    Transfer,
    TransferScores,
    TransferSpreads,
)
from claptune.stats import McNemarResult, Spread, mcnemar, mean_spread


def _summary(class_names) -> Report:
    before = {c: 0.2 + 0.1 * i for i, c in enumerate(class_names)}
    after = {c: 0.3 + 0.1 * i for i, c in enumerate(class_names)}
    return Report(
        claptune_version="0",
        model=ModelInfo(spec="tiny"),
        target=TargetInfo(name="folder", n_clips=6, n_classes=3),
        n_runs=2,
        splits=[{"index": 0}],
        seeds=[0, 1],
        before=Side(
            accuracy=0.25,
            accuracy_spread=mean_spread([0.2, 0.3]),
            per_class=before,
            per_class_std=dict.fromkeys(class_names, 0.05),
        ),
        after=Side(
            accuracy=0.35,
            accuracy_spread=mean_spread([0.3, 0.4]),
            per_class=after,
            per_class_std=dict.fromkeys(class_names, 0.05),
        ),
        gain=Gain(accuracy=0.1, accuracy_spread=mean_spread([0.1, 0.1])),
        paired_test=PairedTest(
            mcnemar=mcnemar(np.array([1, 0, 0, 1, 1, 1], bool), np.ones(6, bool))
        ),
        curation=CurationCounts(pairs={"ds": mean_spread([3, 3])}, per_class={"dog": 2}),
        forgetting=Forgetting(
            n_pairs=4, before={"a2t_R@1": 0.5}, after={"a2t_R@1": mean_spread([0.5, 0.25])}
        ),
        runs=[RunRecord(split=0, seed=0, before_accuracy=0.2, after_accuracy=0.3, n_pairs=3)],
        config={"model": "tiny", "methods": ["ds"]},
    )


def test_report_json_round_trip_is_exact():
    report = _summary(["dog", "rain"])
    report.transfer = Transfer(
        n_clips=3,
        n_classes=2,
        clips_per_class={"dog": 2, "rain": 1},
        before=TransferScores(accuracy=1 / 3, class_mean_accuracy=0.25),
        after=TransferSpreads(
            accuracy=mean_spread([0.5, 1.0]), class_mean_accuracy=mean_spread([0.25, 0.75])
        ),
    )
    report.before.per_class["rain"] = None  # a class never scored
    text = report.to_json()
    again = Report.from_json(text)
    assert again == report and again.to_json() == text
    assert isinstance(again.before.accuracy_spread, Spread)
    assert isinstance(again.paired_test.mcnemar, McNemarResult)
    assert isinstance(again.transfer.after.accuracy, Spread)
    # the keys users read stay those of report.json
    data = json.loads(text)
    assert data["before"]["accuracy_spread"]["mean"] == pytest.approx(0.25)
    assert data["forgetting"]["after"]["a2t_R@1"]["n"] == 2
    assert list(data)[:3] == ["claptune_version", "model", "target"]


def test_report_from_json_rejects_unknown_and_missing_keys():
    data = _summary(["dog"]).to_dict()
    data["before"]["accurracy"] = 0.1
    with pytest.raises(ClaptuneError, match="unknown keys"):
        Report.from_dict(data)
    data = _summary(["dog"]).to_dict()
    del data["gain"]
    with pytest.raises(ClaptuneError, match="gain"):
        Report.from_dict(data)


def test_both_reports_share_one_base_and_keep_their_key_order():
    """Report and AdaptReport extend BaseReport; KEYS, each file's key order, names every field
    once, and report.json follows it (the shared fields sit where they always did)."""
    import dataclasses

    from claptune.report.schema import AdaptReport, BaseReport, EvalScores, TransferScores

    base = [f.name for f in dataclasses.fields(BaseReport)]
    for cls in (Report, AdaptReport):
        names = [f.name for f in dataclasses.fields(cls)]
        assert issubclass(cls, BaseReport) and names[: len(base)] == base
        assert sorted(cls.KEYS) == sorted(names) and len(set(cls.KEYS)) == len(cls.KEYS)
    assert list(_summary(["dog"]).to_dict()) == list(Report.KEYS)
    assert TransferScores is EvalScores


def test_report_new_optional_fields_load_old_files():
    """A field added with a default leaves older report.json files readable."""
    data = _summary(["dog"]).to_dict()
    del data["templates"], data["transfer"], data["before"]["accuracy_all"]
    report = Report.from_dict(data)
    assert report.templates == [] and report.transfer is None
    assert report.before.accuracy_all is None


def test_write_report_files_and_offline_html(tmp_path):
    class_names = ["dog", "rain", "<script>"]
    clips = []
    for i in range(3):
        path = tmp_path / f"clip{i}.wav"
        t = np.arange(22050 * 6) / 22050
        sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(np.float32), 22050)
        clips.append(path)
    pairs = [
        {
            "audio": str(clips[i % 3]),
            "text": f"a dog barking {i}",
            "score": 0.5 + i / 10,
            "method": "ds",
            "class": class_names[i % 3],
        }
        for i in range(5)
    ]
    confusion = np.array([[2, 0, 0], [1, 1, 0], [0, 0, 2]])
    assets = ReportAssets(
        class_names=class_names,
        confusion_before=confusion,
        confusion_after=confusion,
        pairs=pairs,
        audio_samples=2,
        audio_seconds=2.0,
    )
    written = write_report(tmp_path / "run", _summary(class_names), assets)

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["before"]["accuracy"] == 0.25 and report["after"]["accuracy"] == 0.35
    for name in (
        "per_class.png",
        "confusion_before.png",
        "confusion_after.png",
        "confusion_change.png",
    ):
        assert written[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = written["md"].read_text()
    assert "25.0 ± 7.1" in md and "![per_class.png](per_class.png)" in md

    html = written["html"].read_text()
    # self-contained: nothing fetched from a network, every src/href is a data: URI
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    sources = re.findall(r"""(?:src|href)="([^"]*)\"""", html)
    assert sources and all(s.startswith("data:") for s in sources)
    mime = preview_encoding()[2]  # Ogg Opus where libsndfile writes it
    players = re.findall(f'<audio controls[^>]*src="data:{mime};base64,', html)
    assert len(players) == 2  # audio_samples, each clip at most once
    assert html.count("<img alt=") == 4  # per class, before, after, after - before
    assert "<script>" not in html  # class names are escaped
    assert "&lt;script&gt;" in html
    assert "a dog barking 4" in html  # the best pair of its class is listed


def test_previews_are_compressed_and_decode_to_the_clip_length(tmp_path):
    """A 4 s preview is a tenth of 16-bit WAV in Ogg Opus (FLAC where libsndfile has no Opus),
    and decodes back to 4 s at 16 kHz."""
    import io

    from claptune.report.page import PREVIEW_RATE, preview_audio

    clip = tmp_path / "noise.wav"  # white noise: the hardest case for any codec
    sf.write(clip, 0.2 * np.random.default_rng(0).standard_normal(44_100 * 6), 44_100)
    data, mime, ext = preview_audio(clip, seconds=4.0)
    wav_bytes = 4 * PREVIEW_RATE * 2
    assert (mime, ext) in {("audio/ogg", ".ogg"), ("audio/flac", ".flac"), ("audio/wav", ".wav")}
    if ext == ".ogg":
        assert len(data) < wav_bytes / 5
    wave_back, rate = sf.read(io.BytesIO(data))
    assert rate == PREVIEW_RATE and len(wave_back) == 4 * PREVIEW_RATE


def test_report_says_when_a_run_had_no_corpus():
    from claptune.data.captioned import NO_CORPUS
    from claptune.report.format import corpus_line
    from claptune.report.improve import render_html, render_markdown

    names = ["dog", "rain", "siren"]
    report = _summary(names)  # its config names no corpus
    line = corpus_line(report)
    assert line is not None and NO_CORPUS[1:] in line
    assets = ReportAssets(class_names=names)
    assert line in render_markdown(report, assets)
    assert line.split(":")[0] in render_html(report, assets)
    report.config["corpus"] = "some/corpus"
    assert corpus_line(report) is None and NO_CORPUS[1:] not in render_markdown(report, assets)
