"""The report of an ``adapt`` run: report.json, report.md (+ PNG figures) and report.html.

``write_adapt_report(out_dir, report, assets)`` takes the run's ``AdaptReport``
(``claptune.report.schema``) and the curated pairs, and writes the same three files as
``improve``'s report, from the same pieces (``claptune.report.page``), with the label-free
figures: the class shares curation balanced to, the pseudo-labels and predictions per class, the
confidence and margin histograms, and the curated pairs of every class to listen to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from claptune.report.format import (
    CLASS_HEADER,
    check_rows,
    class_head_sentence,
    class_rows,
    class_table_note,
    corpus_line,
    count,
    eval_lines,
    guard_lines,
    rejected_student_line,
    summary_lines,
)
from claptune.report.page import (
    PlayerAssets,
    Preview,
    html_config,
    html_img,
    html_page,
    html_table,
    inline_players,
    md_code_to_html,
    md_config,
    md_figure,
    md_page,
    md_table,
    pairs_by_class,
    pairs_table,
    players_table,
    write_pages,
)
from claptune.report.plots import class_count_bars, histogram_plot
from claptune.report.schema import AdaptReport
from claptune.textfiles import public_text


@dataclass(kw_only=True)
class AdaptAssets(PlayerAssets):
    """The curated pairs and the players' budget, with adapt's smaller defaults."""

    audio_per_class: int = 1  # curated pairs per class embedded as players in report.html
    audio_seconds: float = 3.0  # 3 s of 16 kHz Ogg Opus per player: 50 classes stay ~1 MB


def adapt_figures(report: AdaptReport) -> dict[str, bytes]:
    """The report's PNG figures by file name: the two histograms, the counts per class."""
    figs: dict[str, bytes] = {}
    for name, hist in (("confidence", report.confidence), ("margin", report.margin)):
        if hist is not None:
            figs[f"{name}.png"] = histogram_plot(
                hist.edges,
                hist.counts,
                hist.counts_curated,
                f"{name} of the teacher's refined pseudo-label",
                hist.threshold,
            )
    if report.classes:
        names = list(report.classes)
        rows = report.classes.values()
        figs["classes.png"] = class_count_bars(
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


def _to_hear(assets: AdaptAssets) -> dict[str, list[dict]]:
    """The curated pairs of each class, best first, or for a class with none the teacher's
    surest clips; classes in name order."""
    by_class = pairs_by_class(assets.pairs)
    fallback = {c: r for c, r in pairs_by_class(assets.surest).items() if c not in by_class}
    return dict(sorted({**by_class, **fallback}.items()))


def _heard(assets: AdaptAssets) -> list[dict]:
    """The rows that get a player: the first ``audio_per_class`` of each class."""
    return [r for rows in _to_hear(assets).values() for r in rows[: assets.audio_per_class]]


def _title(report: AdaptReport) -> str:
    return f"claptune adapt: {report.model.spec} on {report.target.n_clips} unlabeled clips"


def saved_what(report: AdaptReport) -> str:
    """What RUN/model holds, as the start of a sentence."""
    if report.saved == "teacher":
        return "Saved model (the teacher: the label-free guard did not keep the adapted student)"
    return "Adapted model"


def saved_line(report: AdaptReport) -> str:
    """Where RUN/model (and ``--keep-student``'s RUN/student) went, in Markdown."""
    where = public_text(report.model_dir)  # the run folder's model/, beside this report
    head = class_head_sentence(report.model_dir)
    return f"{saved_what(report)}: `{where}/`, loadable with `claptune.load_model`.{head}" + (
        rejected_student_line(report.student_dir) if report.student_dir else ""
    )


def render_adapt_markdown(report: AdaptReport, figure_files: Sequence[str] = ()) -> str:
    """report.md; ``figure_files``: the PNGs written beside it."""
    out = [f"- {line}" for line in summary_lines(report)]
    if report.model_dir:
        out.append(f"- {saved_line(report)}")
    out.append("")
    out += ["## Labels and the guard", ""]
    out += [f"- {line}" for line in guard_lines(report)]
    out.append("")
    if report.evaluation:
        out += ["## Scored on a labelled set", ""]
        out += [f"- {line}" for line in eval_lines(report.evaluation)]
        out.append("")
    checks = check_rows(report)
    if checks:
        out += ["## Forgetting and transfer checks", ""]
        out += md_table(["check", "before", "after"], checks)
        out.append("")
    elif note := corpus_line(report):
        out += ["## Forgetting and transfer checks", "", note, ""]
    for name in ("confidence.png", "margin.png", "classes.png"):
        if name in figure_files:
            out += md_figure(name, name[:-4])
    if report.classes:
        out += [
            "## Per class",
            "",
            class_table_note(report),
            "",
        ]
        out += md_table(CLASS_HEADER, class_rows(report))
        out.append("")
    out += md_config(report.config)
    return md_page(_title(report), out)


def render_adapt_html(
    report: AdaptReport,
    assets: AdaptAssets,
    figures: dict[str, bytes] | None = None,
    players: list[tuple[dict, Preview]] | None = None,
) -> str:
    """The page. ``players``: the rows that get a player with their sources
    (``write_adapt_report`` decides inline or linked); by default inlined."""
    figures = figures or {}
    parts = [f"<p>{escape(line)}</p>" for line in summary_lines(report)]
    if report.model_dir:
        parts.append(f'<p class="muted">{md_code_to_html(saved_line(report))}</p>')
    parts.append("<h2>Labels and the guard</h2>")
    parts += [
        f"<p>{escape(line.replace('**', '').replace('`', ''))}</p>" for line in guard_lines(report)
    ]
    if report.evaluation:
        parts.append("<h2>Scored on a labelled set</h2>")
        parts += [f"<p>{escape(line)}</p>" for line in eval_lines(report.evaluation)]
    checks = check_rows(report)
    if checks:
        parts.append("<h2>Forgetting and transfer checks</h2>")
        parts.append(
            '<p class="muted">Held-out corpus pairs (never replayed or curated) and '
            "held-out corpus clips whose caption names one class, in percent.</p>"
        )
        rows = [tuple(escape(c) for c in row) for row in checks]
        parts.append(html_table(["check", "before", "after"], rows))
    elif note := corpus_line(report):
        parts.append("<h2>Forgetting and transfer checks</h2>")
        parts.append(f'<p class="note">{escape(note)}</p>')

    parts.append("<h2>How sure the teacher's pseudo-labels are</h2>")
    parts.append(
        '<p class="muted">Refined probabilities of every clip (grey) and of the clips '
        f"curated (blue); curation cut on the {escape(report.criterion)}.</p>"
    )
    parts.append(
        html_img(figures, "confidence.png", "confidence histogram")
        + html_img(figures, "margin.png", "margin histogram")
    )
    if report.classes:
        parts.append("<h2>Per class</h2>")
        parts.append(html_img(figures, "classes.png", "clips per class"))
        parts.append(f'<p class="muted">{escape(class_table_note(report))}</p>')
        rows = [tuple(escape(c) for c in row) for row in class_rows(report)]
        parts.append(html_table(CLASS_HEADER, rows))
    parts += _listen(assets, players)
    parts += html_config(report.config)
    return html_page(_title(report), parts)


def _listen(assets: AdaptAssets, players: list[tuple[dict, Preview]] | None) -> list[str]:
    """One folded section per class: its players, then its other top pairs."""
    classes = _to_hear(assets)
    if not classes:
        return []
    parts = ["<h2>Listen to what the curation chose</h2>"]
    curated = pairs_by_class(assets.pairs)
    if fallback := len(classes) - len(curated):
        parts.append(
            f'<p class="muted">{count(fallback, "class", "classes")} got no curated pair: their '
            "players are the clips the teacher is surest of.</p>"
        )
    if players is None:
        players = inline_players(_heard(assets), assets.audio_seconds)
    sources = iter(players)  # _heard(assets) in class order
    for cls, rows in classes.items():
        mine = [next(sources) for _ in rows[: assets.audio_per_class]]
        listed = rows[assets.audio_per_class : assets.pairs_per_class]
        table = players_table(mine) if mine else ""
        if listed:
            table += pairs_table(listed, method=False)
        what = count(len(rows), "pair") if cls in curated else "no curated pair"
        parts.append(f"<details><summary>{escape(cls)}: {what}</summary>{table}</details>")
    return parts


def write_adapt_report(
    out_dir: str | Path, report: AdaptReport, assets: AdaptAssets
) -> dict[str, Path]:
    """Write report.json, report.md (+ PNGs) and report.html into ``out_dir``."""
    figs = adapt_figures(report)
    return write_pages(
        out_dir,
        report,
        figs,
        render_adapt_markdown(report, list(figs)),
        lambda players: render_adapt_html(report, assets, figs, players),
        _heard(assets),
        assets,
    )


__all__ = [
    "AdaptAssets",
    "adapt_figures",
    "render_adapt_html",
    "render_adapt_markdown",
    "write_adapt_report",
]
