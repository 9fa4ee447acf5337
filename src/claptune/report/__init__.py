"""The report of an ``improve`` run: report.json, report.md and a self-contained report.html.

``write_report(out_dir, report, assets)`` takes the run's ``Report`` (the typed schema of
report.json, ``claptune.report.schema``) and the arrays the figures need, and writes:
- ``report.json``: the summary itself, the machine-readable record;
- ``report.md`` plus the PNG figures beside it;
- ``report.html``: one page with the figures and up to ``audio_per_class`` curated pairs of
  every class as playable audio, embedded as base64 ``data:`` URIs so that it opens offline
  and can be mailed; when that would pass ``max_page_bytes`` (~20 MB) the previews are
  written to ``audio/`` beside it and linked instead (the page then needs that folder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from claptune.report import plots
from claptune.report.audio import AUDIO_DIR, base64_size, previews
from claptune.report.html import audio_sample, render_html
from claptune.report.markdown import render_markdown
from claptune.report.schema import Report
from claptune.textfiles import write_text


@dataclass
class ReportAssets:
    """What the figures and the listening section need beyond the JSON summary."""

    class_names: list[str]
    confusion_before: np.ndarray | None = None  # (C, C) counts, true x predicted, test parts
    confusion_after: np.ndarray | None = None
    pairs: list[dict] = field(
        default_factory=list
    )  # curated rows: audio, text, score, method, class
    audio_per_class: int = 2  # best-scored curated pairs of each class given a player
    # the teacher's surest clips per class (html.surest_rows): the players of a class that got
    # no curated pair, so that every class can be heard
    surest: list[dict] = field(default_factory=list)
    audio_samples: int | None = None  # cap on all players (spread over classes); None: no cap
    audio_seconds: float = 4.0
    pairs_per_class: int = 5  # top-scoring curated pairs listed per class
    # above this the previews are linked files under RUN/audio/ rather than inlined: a page
    # much larger loads slowly and no longer fits a mail
    max_page_bytes: int = 20_000_000
    top_confusions: int = 20  # rows of the top-confusions table


def _figures(report: Report, assets: ReportAssets) -> dict[str, bytes]:
    figs: dict[str, bytes] = {}
    names = assets.class_names
    before, after = report.before, report.after
    if before.per_class and after.per_class:

        def values(got: dict[str, float | None]) -> list[float]:  # None (never scored) -> NaN
            return [np.nan if got.get(c) is None else got[c] for c in names]

        figs["per_class.png"] = plots.per_class_bars(
            names,
            values(before.per_class),
            values(after.per_class),
            values(before.per_class_std),
            values(after.per_class_std),
        )
    if assets.confusion_before is not None:
        figs["confusion_before.png"] = plots.confusion_plot(
            assets.confusion_before, names, "before: test parts, all runs pooled"
        )
    if assets.confusion_after is not None:
        figs["confusion_after.png"] = plots.confusion_plot(
            assets.confusion_after, names, "after: test parts, all runs pooled"
        )
    if assets.confusion_before is not None and assets.confusion_after is not None:
        figs["confusion_change.png"] = plots.confusion_diff_plot(
            assets.confusion_before,
            assets.confusion_after,
            names,
            "after − before: test parts, all runs pooled",
        )
    prior = report.priors.splits[0] if report.priors and report.priors.splits else None
    if prior is not None and prior.estimated:
        figs["priors.png"] = plots.prior_bars(names, prior.estimated, prior.true, prior.split)
    return figs


def write_report(out_dir: str | Path, report: Report, assets: ReportAssets) -> dict[str, Path]:
    """Write report.json, report.md (+ PNGs) and report.html into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    path = out / "report.json"
    path.write_text(report.to_json())
    written["json"] = path
    figs = _figures(report, assets)
    for name, png in figs.items():
        (out / name).write_bytes(png)
        written[name] = out / name
    path = out / "report.md"
    write_text(path, render_markdown(report, assets, figure_files=list(figs)))
    written["md"] = path
    path = out / "report.html"
    sample = audio_sample(assets)
    # the page without its players: the figures in base64 and a margin for text and tables
    page = sum(base64_size(len(png)) for png in figs.values()) + 500_000
    players, linked = previews(
        [str(r["audio"]) for r in sample], assets.audio_seconds, out, assets.max_page_bytes, page
    )
    if linked:
        written["audio"] = out / AUDIO_DIR
    html = render_html(
        report, assets, figures=figs, players=list(zip(sample, players, strict=True))
    )
    write_text(path, html)
    written["html"] = path
    return written


__all__ = ["Report", "ReportAssets", "write_report", "render_html", "render_markdown"]
