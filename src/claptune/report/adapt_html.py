"""report.html of an ``adapt`` run: one self-contained page (figures and audio as data: URIs),
built from the HTML report's own pieces (style, tables, players)."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from claptune.report.adapt_format import (
    CLASS_HEADER,
    check_rows,
    class_rows,
    corpus_note,
    eval_lines,
    guard_lines,
    summary_lines,
)
from claptune.report.audio import data_uri
from claptune.report.html import _CSS, _pairs_by_class, _players, _table

if TYPE_CHECKING:
    from claptune.report.adapt import AdaptAssets
    from claptune.report.schema import AdaptReport


def _figure(figures: dict[str, bytes], name: str, alt: str) -> str:
    if name not in figures:
        return ""
    return f'<img alt="{escape(alt)}" src="{data_uri(figures[name], "image/png")}">'


def render_adapt_html(
    report: AdaptReport, assets: AdaptAssets, figures: dict[str, bytes] | None = None
) -> str:
    figures = figures or {}
    title = f"claptune adapt: {report.model.spec} on {report.target.n_clips} unlabeled clips"
    parts = [f"<h1>{escape(title)}</h1>"]
    parts += [f"<p>{escape(line)}</p>" for line in summary_lines(report)]
    if report.model_dir:
        parts.append(
            f'<p class="muted">Adapted model: <code>{escape(report.model_dir)}</code>, '
            "loadable with <code>claptune.load_model</code>.</p>"
        )
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
        parts.append(
            _table(["check", "before", "after"], [tuple(escape(c) for c in row) for row in checks])
        )
    elif note := corpus_note(report):
        parts.append("<h2>Forgetting and transfer checks</h2>")
        parts.append(f'<p class="note">{escape(note)}</p>')

    parts.append("<h2>How sure the teacher's pseudo-labels are</h2>")
    parts.append(
        '<p class="muted">Refined probabilities of every clip (grey) and of the clips '
        f"curated (blue); curation cut on the {escape(report.criterion)}.</p>"
    )
    parts.append(
        _figure(figures, "confidence.png", "confidence histogram")
        + _figure(figures, "margin.png", "margin histogram")
    )
    if report.classes:
        parts.append("<h2>Per class</h2>")
        parts.append(_figure(figures, "classes.png", "clips per class"))
        parts.append(
            _table(CLASS_HEADER, [tuple(escape(c) for c in row) for row in class_rows(report)])
        )

    by_class = _pairs_by_class(assets.pairs)
    fallback = {c: r for c, r in _pairs_by_class(assets.surest).items() if c not in by_class}
    if by_class or fallback:
        parts.append("<h2>Listen to what the curation chose</h2>")
        if fallback:
            parts.append(
                f'<p class="muted">{len(fallback)} classes got no curated pair: their players '
                "are the clips the teacher is surest of.</p>"
            )
        for cls, rows in sorted({**by_class, **fallback}.items()):
            heard = rows[: assets.audio_per_class]
            listed = rows[assets.audio_per_class : assets.pairs_per_class]
            table = _players(heard, assets.audio_seconds) if heard else ""
            if listed:
                table += _table(
                    ["caption", "score", "file"],
                    [
                        (
                            escape(str(r["text"])),
                            f"{float(r.get('score', 0.0)):.3f}",
                            escape(Path(str(r["audio"])).name),
                        )
                        for r in listed
                    ],
                )
            what = f"{len(rows)} pairs" if cls in by_class else "no curated pair"
            parts.append(f"<details><summary>{escape(cls)}: {what}</summary>{table}</details>")
    parts.append("<h2>Resolved configuration</h2>")
    parts.append(f"<pre>{escape(json.dumps(report.config, indent=2, default=str))}</pre>")
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n{body}\n"
        "</body></html>\n"
    )


__all__ = ["render_adapt_html"]
