"""report.html shows every class: players within a per-class budget, linked files past the page
size limit, the top-confusion table, pseudo-label precision per class and the prior figure."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from claptune.report import ReportAssets, write_report
from claptune.report.format import top_confusions
from claptune.report.page import preview_encoding
from claptune.report.precision import pseudo_label_precision
from claptune.report.schema import (
    ClassPriors,
    Gain,
    ModelInfo,
    Report,
    Side,
    SplitPrior,
    TargetInfo,
)
from claptune.stats import mean_spread

CLASSES = ["alarm", "bird", "cat", "dog", "engine"]


def _report(class_names=CLASSES) -> Report:
    shares = dict.fromkeys(class_names, 0.5)
    return Report(
        claptune_version="0",
        model=ModelInfo(spec="tiny"),
        target=TargetInfo(name="folder", n_clips=20, n_classes=len(class_names)),
        n_runs=1,
        seeds=[0],
        before=Side(accuracy=0.5, accuracy_spread=mean_spread([0.5]), per_class=shares),
        after=Side(accuracy=0.6, accuracy_spread=mean_spread([0.6]), per_class=shares),
        gain=Gain(accuracy=0.1, accuracy_spread=mean_spread([0.1])),
    )


@pytest.fixture
def pairs(tmp_path):
    """Four pairs per class, each on its own 1 s clip, scores descending within a class."""
    rows = []
    t = np.arange(8000) / 8000
    for c, cls in enumerate(CLASSES):
        for k in range(4):
            path = tmp_path / f"{cls}_{k}.wav"
            sf.write(
                path, (0.2 * np.sin(2 * np.pi * 200 * (c + k + 1) * t)).astype(np.float32), 8000
            )
            rows.append(
                {
                    "audio": str(path),
                    "text": f"{cls} {k}",
                    "score": 0.9 - k / 10,
                    "method": "ds",
                    "class": cls,
                }
            )
    return rows


def _player_classes(html: str) -> list[str]:
    """The class cell of each player row, in page order."""
    return re.findall(r'<tr><td>([^<]*)</td><td><audio controls preload="none"', html)


def test_players_for_every_class_within_budget(tmp_path, pairs):
    assets = ReportAssets(class_names=CLASSES, pairs=pairs, audio_per_class=2, audio_seconds=0.25)
    html = write_report(tmp_path / "run", _report(), assets)["html"].read_text()
    heard = _player_classes(html)
    assert sorted(heard) == sorted(CLASSES * 2)  # every class, exactly its budget
    # the best-scored pairs of each class are the ones heard
    captions = re.findall(r'preload="none" src="[^"]*"></audio></td><td>([^<]*)</td>', html)
    assert sorted(captions) == sorted(f"{c} {k}" for c in CLASSES for k in (0, 1))

    # a cap on all players still spreads over the classes before a second pair of any
    assets.audio_samples = 3
    html = write_report(tmp_path / "capped", _report(), assets)["html"].read_text()
    assert sorted(_player_classes(html)) == CLASSES[:3]


def test_a_clip_shared_by_two_classes_is_heard_once(tmp_path, pairs):
    shared = dict(pairs[0], **{"class": "bird", "score": 1.0})  # alarm's best clip, as bird
    assets = ReportAssets(
        class_names=CLASSES, pairs=[*pairs, shared], audio_per_class=1, audio_seconds=0.25
    )
    html = write_report(tmp_path / "run", _report(), assets)["html"].read_text()
    assert sorted(_player_classes(html)) == CLASSES  # bird still gets a clip of its own
    sources = re.findall(r'<audio controls preload="none" src="([^"]+)"', html)
    assert len(set(sources)) == len(sources)


def test_players_link_files_when_the_page_would_be_too_large(tmp_path, pairs):
    small = ReportAssets(class_names=CLASSES, pairs=pairs, audio_per_class=2, audio_seconds=0.25)
    written = write_report(tmp_path / "inline", _report(), small)
    html = written["html"].read_text()
    assert "audio" not in written and not (tmp_path / "inline" / "audio").exists()
    _, _, mime, ext = preview_encoding()
    assert len(re.findall(f'src="data:{mime};base64,', html)) == 10

    # the same report with a limit below its size: files beside the page, lazily linked
    small.max_page_bytes = len(html.encode()) - 1
    written = write_report(tmp_path / "linked", _report(), small)
    html = written["html"].read_text()
    assert "data:audio" not in html
    links = re.findall(f'<audio controls preload="none" src="(audio/[^"]+\\{ext})"', html)
    assert len(links) == 10 and len(set(links)) == 10
    for link in links:
        info = sf.info(str(tmp_path / "linked" / link))  # a playable clip, 0.25 s
        assert info.frames == info.samplerate // 4
    assert sorted(p.name for p in written["audio"].iterdir()) == sorted(
        link.split("/")[1] for link in links
    )
    # the page is well under the limit once the audio is out
    assert len(html.encode()) < small.max_page_bytes


def test_adapt_page_links_its_players_past_the_size_limit_too(tmp_path, pairs):
    """adapt's page gets its players from the same kit: inlined, or past ``max_page_bytes``
    linked files beside it, one player per class."""
    from claptune.report import AdaptAssets, AdaptReport, write_adapt_report

    report = AdaptReport(
        claptune_version="0",
        model=ModelInfo(spec="tiny"),
        target=TargetInfo(name="clips", n_clips=20, n_classes=len(CLASSES)),
        seed=0,
        methods=["pseudo_refined"],
        loss="hard",
    )
    assets = AdaptAssets(pairs=pairs, audio_seconds=0.25)
    written = write_adapt_report(tmp_path / "inline", report, assets)
    _, _, mime, ext = preview_encoding()
    assert len(re.findall(f'src="data:{mime};base64,', written["html"].read_text())) == 5
    assert "audio" not in written

    assets.max_page_bytes = 1
    written = write_adapt_report(tmp_path / "linked", report, assets)
    html = written["html"].read_text()
    links = re.findall(f'<audio controls preload="none" src="(audio/[^"]+\\{ext})"', html)
    assert "data:audio" not in html and len(links) == len(set(links)) == 5
    assert sorted(p.name for p in written["audio"].iterdir()) == sorted(
        link.split("/")[1] for link in links
    )


def test_top_confusions_match_a_brute_force_ranking():
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(7)]
    before = rng.integers(0, 6, (7, 7))
    after = rng.integers(0, 6, (7, 7))
    rows = top_confusions(before, after, names, k=10)
    assert len(rows) == 10
    for true, pred, b, a, d in rows:
        i, j = names.index(true), names.index(pred)
        assert i != j and (b, a, d) == (before[i, j], after[i, j], after[i, j] - before[i, j])
    # no off-diagonal cell left out is larger than the smallest one listed
    listed = {(t, p) for t, p, *_ in rows}
    smallest = min(max(b, a) for _, _, b, a, _ in rows)
    left = [
        max(before[i, j], after[i, j])
        for i in range(7)
        for j in range(7)
        if i != j and (names[i], names[j]) not in listed
    ]
    assert max(left) <= smallest
    keys = [max(b, a) for _, _, b, a, _ in rows]
    assert keys == sorted(keys, reverse=True)
    assert top_confusions(np.eye(3, dtype=int), np.eye(3, dtype=int), names[:3]) == []


def test_confusion_table_and_difference_matrix_in_the_page(tmp_path):
    names = ["dog", "rain", "siren"]
    before = np.array([[3, 2, 0], [0, 4, 1], [0, 0, 5]])
    after = np.array([[5, 0, 0], [0, 3, 2], [0, 0, 5]])
    assets = ReportAssets(class_names=names, confusion_before=before, confusion_after=after)
    written = write_report(tmp_path / "run", _report(names), assets)
    html = written["html"].read_text()
    assert written["confusion_change.png"].read_bytes()[:4] == b"\x89PNG"
    assert "<th>true class</th><th>predicted class</th><th>before</th><th>after</th>" in html
    assert re.search(
        r"<td>dog</td><td>rain</td><td[^>]*>2</td><td[^>]*>0</td><td[^>]*>-2</td>", html
    )
    assert re.search(
        r"<td>rain</td><td>siren</td><td[^>]*>1</td><td[^>]*>2</td><td[^>]*>\+1</td>", html
    )
    assert 'alt="confusion change"' in html
    assert "| dog | rain | 2 | 0 | -2 |" in written["md"].read_text()


def test_pseudo_label_precision_per_class(tmp_path):
    items = ["a.wav", "b.wav", "c.wav", "d.wav"]
    labels = [0, 0, 1, 2]  # dog, dog, rain, siren
    names = ["dog", "rain", "siren"]
    rows = [
        {"audio": "a.wav", "class": "dog", "method": "pseudo"},  # right
        {"audio": "b.wav", "class": "rain", "method": "pseudo"},  # wrong
        {"audio": "c.wav", "class": "rain", "method": "pseudo_refined"},  # right
        {"audio": "d.wav", "class": "dog", "method": "ds"},  # not a pseudo label: ignored
        {"audio": "corpus.wav", "class": "dog", "method": "pseudo"},  # not a target clip
    ]
    pp = pseudo_label_precision(rows, items, labels, names)
    assert (pp.n, pp.correct, pp.precision) == (3, 2, pytest.approx(2 / 3))
    assert pp.methods == ["pseudo", "pseudo_refined"]
    assert (pp.per_class["dog"].n, pp.per_class["dog"].precision) == (1, 1.0)
    assert (pp.per_class["rain"].n, pp.per_class["rain"].correct) == (2, 1)
    assert pp.per_class["siren"].n == 0 and pp.per_class["siren"].precision is None
    assert pseudo_label_precision(rows, items, None, names) is None  # no labels, no score
    assert pseudo_label_precision(rows[3:4], items, labels, names) is None

    report = _report(names)
    report.pseudo_precision = pp
    again = Report.from_json(report.to_json())
    assert again == report and again.pseudo_precision.per_class["rain"].correct == 1
    assert json.loads(report.to_json())["pseudo_precision"]["per_class"]["dog"]["n"] == 1
    written = write_report(tmp_path / "run", report, ReportAssets(class_names=names))
    html = written["html"].read_text()
    assert "Pseudo-label precision per class" in html
    assert re.search(r"<td>rain</td><td[^>]*>2</td><td[^>]*>1</td><td[^>]*>50\.0</td>", html)
    assert "| rain | 2 | 1 | 50.0 |" in written["md"].read_text()


def test_prior_figure_estimated_against_true(tmp_path):
    names = ["dog", "rain"]
    report = _report(names)
    report.priors = ClassPriors(
        method="em",
        splits=[
            SplitPrior(
                split=0, estimated={"dog": 0.7, "rain": 0.3}, true={"dog": 0.8, "rain": 0.2}, tv=0.1
            )
        ],
    )
    written = write_report(tmp_path / "run", report, ReportAssets(class_names=names))
    assert written["priors.png"].read_bytes()[:4] == b"\x89PNG"
    assert 'alt="class priors"' in written["html"].read_text()
    assert "![priors.png](priors.png)" in written["md"].read_text()


def test_every_class_gets_players_the_surest_clips_without_curated_pairs(tmp_path, pairs):
    """Classes that got no curated pair are heard too: the clips the teacher is surest of,
    marked as such; a class with curated pairs keeps them."""
    from claptune.report.page import SUREST, surest_rows

    curated = [r for r in pairs if r["class"] in ("alarm", "bird")]
    items = [r["audio"] for r in pairs]  # 20 clips, 4 per class in CLASSES order
    scores = np.full((len(items), len(CLASSES)), 0.1)
    for i in range(len(items)):
        scores[i, i // 4] = 0.5 + 0.01 * i  # the teacher puts clip i in class i // 4
    scores[12, 4] = 0.3  # dog's first clip: the pool's closest to engine, yet classified dog
    surest = surest_rows(items, scores, CLASSES, per_class=1, clips=np.arange(16))
    assert [(r["class"], r["audio"]) for r in surest] == [
        ("alarm", items[3]),
        ("bird", items[7]),
        ("cat", items[11]),
        ("dog", items[15]),
        ("engine", items[12]),  # no clip of the pool is classified engine: the closest one
    ]
    assets = ReportAssets(
        class_names=CLASSES, pairs=curated, audio_per_class=1, audio_seconds=0.25, surest=surest
    )
    html = write_report(tmp_path / "run", _report(), assets)["html"].read_text()
    assert _player_classes(html) == CLASSES
    assert html.count(escape_html(SUREST)) == 3  # cat, dog, engine
    assert "for the 3 classes without a curated pair" in html


def escape_html(text: str) -> str:
    from html import escape

    return escape(text)


def test_legends_sit_outside_the_data(monkeypatch):
    """Every figure with a legend keeps it off the axes, so it covers no bar or line."""
    from claptune.report import plots

    figures = []
    monkeypatch.setattr(plots, "_png", lambda fig: figures.append(fig) or b"")
    names = [f"class {i}" for i in range(12)]
    full = np.linspace(0.05, 0.98, 12)  # bars reaching the right edge, where legends sat
    plots.per_class_bars(names, full, full[::-1], full * 0.05, full * 0.05)
    plots.class_count_bars(names, {"a": full * 100, "b": full[::-1] * 100}, "share (%)")
    plots.histogram_plot(np.linspace(0, 1, 21), [5] * 20, [3] * 20, "confidence", 0.5)
    plots.ablation_plot(["x hard", "x soft"], [0.5, 0.9], [0.01, 0.01], baseline=0.6)
    assert len(figures) == 4
    for fig in figures:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (ax,) = fig.axes
        legend = ax.get_legend().get_window_extent(renderer)
        assert not legend.overlaps(ax.get_window_extent(renderer)), fig


def test_guard_lines_say_which_way_the_guard_went_and_why():
    """The report's guard sentence for each outcome: kept, not clearly better, and could not
    decide, whose reason is the console's own words (``undecided_reason``)."""
    from claptune.report import AdaptReport
    from claptune.report.format import guard_lines, undecided_reason

    def lines(guard):
        report = AdaptReport(
            claptune_version="0",
            model=ModelInfo(spec="tiny"),
            target=TargetInfo(name="clips", n_clips=80, n_classes=len(CLASSES)),
            seed=0,
            methods=["pseudo_refined"],
            loss="hard",
            guard=guard,
            model_dir="RUN/model",
        )
        return guard_lines(report)

    base = {"n_clips": 16, "consistency_student": 0.75, "consistency_teacher": 0.5}
    kept = lines(
        {**base, "keep_student": True, "decidable": True, "discordant": 6, "p_value": 0.02}
    )
    assert "student is kept" in kept[0] and "p = 0.02" in kept[0]
    lost = lines(
        {**base, "keep_student": False, "decidable": True, "discordant": 9, "p_value": 0.3}
    )
    assert "did not clearly beat the teacher" in lost[0] and "the teacher is saved" in lost[0]
    undecided = lines({**base, "keep_student": False, "decidable": False, "discordant": 1})
    assert "could not decide" in undecided[0]
    assert undecided_reason(16, 1) in undecided[0]
    assert "only 1 was classed" in undecided_reason(16, 1)
    assert "only 3 were classed" in undecided_reason(
        16, 3
    ) and "fewer than the 5 " in undecided_reason(16, 3)
    assert lines({}) == ["Guard: not run (no clips were held out of curation; guard_fraction 0)."]
