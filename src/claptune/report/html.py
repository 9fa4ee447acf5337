"""report.html: one self-contained page (inline CSS, figures and audio as data: URIs).

No script, font, stylesheet or media is fetched from anywhere, so the page opens offline.
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from claptune.report.audio import data_uri, preview_wav
from claptune.report.format import (
    headline_rows,
    label_free_lines,
    paired_test_lines,
    pct,
    prior_lines,
    spread,
)

if TYPE_CHECKING:
    from claptune.report import ReportAssets
    from claptune.report.schema import Report

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2733;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #dde3ea}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #dde3ea;padding:.25em .6em;
font-size:.9em;text-align:left;vertical-align:top}th{background:#f3f6f9}
.big{font-size:1.15em}.muted{color:#6b7785}.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%}audio{height:2em;width:260px}pre{background:#f3f6f9;padding:1em;overflow:auto;
font-size:.8em}details{margin:.3em 0}
"""


def _table(header, rows, numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{cls}>{cell}</td>")  # cells are escaped by the caller
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _pairs_by_class(pairs: list[dict]) -> dict[str, list[dict]]:
    by_class: dict[str, list[dict]] = defaultdict(list)
    for row in pairs:
        by_class[str(row.get("class") or "(no class)")].append(row)
    for rows in by_class.values():
        rows.sort(key=lambda r: (-float(r.get("score", 0.0)), str(r.get("audio")), str(r.get("text"))))
    return dict(sorted(by_class.items()))


def _audio_sample(by_class: dict[str, list[dict]], n: int) -> list[dict]:
    """Up to n pairs, round-robin over classes (best-scored first), each clip at most once."""
    chosen, seen = [], set()
    depth = 0
    while len(chosen) < n and any(depth < len(rows) for rows in by_class.values()):
        for rows in by_class.values():
            if depth < len(rows) and rows[depth]["audio"] not in seen and len(chosen) < n:
                chosen.append(rows[depth])
                seen.add(rows[depth]["audio"])
        depth += 1
    return chosen


def _players(sample: list[dict], seconds: float) -> str:
    rows = []
    for row in sample:
        try:
            player = (f'<audio controls preload="none" '
                      f'src="{data_uri(preview_wav(row["audio"], seconds), "audio/wav")}"></audio>')
        except Exception as err:  # a preview must never sink the report; say why instead
            player = f'<span class="muted">no preview: {escape(str(err))}</span>'
        rows.append((escape(str(row.get("class") or "")), player, escape(str(row["text"])),
                     f"{float(row.get('score', 0.0)):.3f}", escape(str(row.get("method", ""))),
                     f'<span class="muted">{escape(Path(str(row["audio"])).name)}</span>'))
    return _table(["class", "listen", "caption", "score", "method", "file"], rows, numeric_from=3)


def render_html(report: Report, assets: ReportAssets, figures: dict[str, bytes] | None = None) -> str:
    figures = figures or {}
    target, model = report.target, report.model
    title = f"claptune improve: {model.spec} on {target.name}"
    parts = [f"<h1>{escape(title)}</h1>"]
    parts.append(
        f'<p class="muted">{target.n_clips} clips, '
        f'{target.n_classes} classes; {report.n_runs} runs '
        f'({len(report.splits)} splits x {len(report.seeds)} seeds). '
        "Accuracy on the test part of each split (never used for anything but scoring), "
        "mean ± std over runs, in percent.</p>"
    )
    rows = [(escape(a), escape(b), escape(c), escape(d)) for a, b, c, d in headline_rows(report)]
    parts.append('<div class="big">' + _table(["", "before", "after", "change"], rows) + "</div>")
    parts += [f"<p>{escape(line)}</p>" for line in paired_test_lines(report)]
    if report.model_dir:
        run = report.model_run
        parts.append(f'<p class="muted">Improved model: <code>{escape(report.model_dir)}'
                     f'</code> (the student of split {run.split}, seed '
                     f'{run.seed}), loadable with <code>claptune.load_model</code>.</p>')

    if "per_class.png" in figures:
        parts.append("<h2>Per class</h2>")
        parts.append(f'<img alt="per-class accuracy" src="{data_uri(figures["per_class.png"], "image/png")}">')
    conf = [n for n in ("confusion_before.png", "confusion_after.png") if n in figures]
    if conf:
        parts.append("<h2>Confusion matrices</h2><div>")
        parts += [f'<img alt="{n}" style="max-width:49%" src="{data_uri(figures[n], "image/png")}">'
                  for n in conf]
        parts.append("</div>")

    fg = report.forgetting
    if fg:
        parts.append("<h2>Forgetting check</h2>")
        parts.append(f'<p class="muted">Retrieval on {fg.n_pairs} held-out pairs of '
                     "the paired corpus (excluded from replay and curation), in percent.</p>")
        rows = [(escape(k), pct(fg.before[k]), spread(fg.after.get(k))) for k in fg.before]
        parts.append(_table(["retrieval", "before", "after"], rows))

    tr = report.transfer
    if tr:
        parts.append("<h2>Transfer check</h2>")
        parts.append(f'<p class="muted">Zero-shot accuracy on {tr.n_clips} held-out corpus '
                     f'clips whose caption names one of {tr.n_classes} target classes: the '
                     "same classes, recorded elsewhere. Clips per class: "
                     + escape(", ".join(f"{c} {n}" for c, n in tr.clips_per_class.items()))
                     + ".</p>")
        rows = [(k.replace("_", " "), pct(getattr(tr.before, k)), spread(getattr(tr.after, k)))
                for k in ("accuracy", "class_mean_accuracy")]
        parts.append(_table(["", "before", "after"], rows))

    cur = report.curation
    by_class = _pairs_by_class(assets.pairs)
    if cur.pairs or cur.per_class or by_class:
        parts.append("<h2>Curated pairs</h2>")
        rows = [(escape(k), spread(s, digits=0, scale=1.0)) for k, s in cur.pairs.items()]
        if rows:
            parts.append(_table(["method", "pairs per run (mean ± std)"], rows))
        parts += [f'<p class="muted">{escape(line)}</p>'
                  for line in prior_lines(report) + label_free_lines(report)]
        if by_class:
            run = report.model_run
            parts.append(f'<p class="muted">Pairs of split {run.split}, seed '
                         f'{run.seed} (the run whose model is saved).</p>')
            parts.append("<h3>Listen to what the curation chose</h3>")
            parts.append(_players(_audio_sample(by_class, assets.audio_samples), assets.audio_seconds))
            parts.append("<h3>Top pairs per class</h3>")
            for cls, rows_c in by_class.items():
                top = rows_c[: assets.pairs_per_class]
                table = _table(["caption", "score", "method", "file"], [
                    (escape(str(r["text"])), f"{float(r.get('score', 0.0)):.3f}",
                     escape(str(r.get("method", ""))), escape(Path(str(r["audio"])).name))
                    for r in top])
                parts.append(f"<details><summary>{escape(cls)}: {len(rows_c)} pairs</summary>"
                             f"{table}</details>")

    if report.runs:
        parts.append("<h2>Runs</h2>")
        rows = [(str(r.split), str(r.seed), pct(r.before_accuracy), pct(r.after_accuracy),
                 str(r.n_pairs)) for r in report.runs]
        parts.append(_table(["split", "seed", "before", "after", "pairs"], rows))
    parts.append("<h2>Resolved configuration</h2>")
    parts.append(f"<pre>{escape(json.dumps(report.config, indent=2, default=str))}</pre>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")
