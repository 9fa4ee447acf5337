"""The report of an ``adapt`` run: report.json, report.md (+ PNG figures) and report.html.

``write_adapt_report(out_dir, report, assets)`` takes the run's ``AdaptReport``
(``claptune.report.schema``) and the curated pairs, and writes the same three files
as ``improve``'s report, with the label-free figures: the class shares curation balanced to,
the pseudo-labels and predictions per class, the confidence and margin histograms, and the
curated pairs of every class to listen to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from claptune.report import plots
from claptune.report.adapt_html import render_adapt_html
from claptune.report.adapt_markdown import render_adapt_markdown
from claptune.report.schema import AdaptReport
from claptune.textfiles import write_text


@dataclass
class AdaptAssets:
    pairs: list[dict] = field(
        default_factory=list
    )  # curated rows: audio, text, score, method, class
    audio_per_class: int = 1  # curated pairs per class embedded as players in report.html
    audio_seconds: float = 3.0  # 3 s of 16 kHz Ogg Opus per player: 50 classes stay ~1 MB
    pairs_per_class: int = 5  # top-scoring curated pairs listed per class
    # the teacher's surest clips per class (report.html.surest_rows): the players of a class
    # with no curated pair, so that every class can be heard
    surest: list[dict] = field(default_factory=list)


def adapt_figures(report: AdaptReport) -> dict[str, bytes]:
    figs: dict[str, bytes] = {}
    for name, hist in (("confidence", report.confidence), ("margin", report.margin)):
        if hist is not None:
            figs[f"{name}.png"] = plots.histogram_plot(
                hist.edges,
                hist.counts,
                hist.counts_curated,
                f"{name} of the teacher's refined pseudo-label",
                hist.threshold,
            )
    if report.classes:
        names = list(report.classes)
        rows = report.classes.values()
        figs["classes.png"] = plots.class_count_bars(
            names,
            {
                "teacher's zero-shot class": [r.teacher for r in rows],
                "refined pseudo-label": [r.pseudo_labels for r in rows],
                "curated pairs": [r.curated for r in rows],
                "student's zero-shot class": [r.student for r in rows],
            },
            "clips",
        )
    return figs


def write_adapt_report(
    out_dir: str | Path, report: AdaptReport, assets: AdaptAssets
) -> dict[str, Path]:
    """Write report.json, report.md (+ PNGs) and report.html into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "report.json"}
    written["json"].write_text(report.to_json())
    figs = adapt_figures(report)
    for name, png in figs.items():
        (out / name).write_bytes(png)
        written[name] = out / name
    written["md"] = out / "report.md"
    write_text(written["md"], render_adapt_markdown(report, list(figs)))
    written["html"] = out / "report.html"
    write_text(written["html"], render_adapt_html(report, assets, figs))
    return written


__all__ = ["AdaptAssets", "adapt_figures", "write_adapt_report"]
