"""report.html: one self-contained page (inline CSS, figures and audio as data: URIs).

No script, font, stylesheet or media is fetched from anywhere, so the page opens offline. Every
class gets its players: its best-scored curated pairs, or where it has none the clips the
teacher is surest of (``surest_rows``); when inlining them all would make the page too large
they are files in ``audio/`` beside the page (see ``claptune.report.audio.previews``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from claptune.report.audio import Preview, data_uri, previews
from claptune.report.format import (
    CONFUSION_HEADER,
    PIPELINE_HEADER,
    PRECISION_HEADER,
    corpus_line,
    guard_lines,
    headline_rows,
    label_free_lines,
    mcnemar_lines,
    paired_test_lines,
    pct,
    pipeline_rows,
    precision_line,
    precision_rows,
    prior_lines,
    saved_model_line,
    spread,
    top_confusions,
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
.note{background:#fff7e0;border-left:3px solid #e0a800;padding:.5em .8em}
img.wide{display:block;max-width:none;width:min(1500px,calc(100vw - 48px));
margin-left:calc((100% - min(1500px,calc(100vw - 48px)))/2)}
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
        rows.sort(
            key=lambda r: (-float(r.get("score", 0.0)), str(r.get("audio")), str(r.get("text")))
        )
    return dict(sorted(by_class.items()))


def _audio_sample(
    by_class: dict[str, list[dict]], n: int | None, per_class: int | None = None
) -> list[dict]:
    """Up to ``per_class`` pairs of each class and ``n`` in all (None: no limit), round-robin
    over classes (best-scored first, so a small ``n`` still spreads over the classes), each
    clip at most once; returned grouped by class in class order."""
    chosen: dict[str, list[dict]] = {c: [] for c in by_class}
    seen: set[str] = set()
    total = 0
    limit = per_class if per_class is not None else max(map(len, by_class.values()), default=0)
    for _depth in range(limit):
        for cls, rows in by_class.items():
            if n is not None and total >= n:
                break
            # the best unused clip of this class: a clip chosen for another class (one clip,
            # two captions) does not cost this class its turn
            row = next((r for r in rows if r["audio"] not in seen), None)
            if row is not None:
                chosen[cls].append(row)
                seen.add(row["audio"])
                total += 1
    return [row for rows in chosen.values() for row in rows]


SUREST = "teacher's surest (no curated pair)"  # the method column of a fallback player


def surest_rows(
    items: list, scores: np.ndarray, class_names: list[str], per_class: int, clips=None
) -> list[dict]:
    """For each class, the ``per_class`` clips the teacher is surest of (highest cosine among
    the clips it classifies into the class, else among all ``clips``), as player rows: what
    report.html plays for a class that got no curated pair. ``scores`` (N, C): the teacher's
    class scores of ``items``; ``clips``: the indices to choose from (default all). Reads no
    label."""
    scores = np.asarray(scores)
    pool = np.arange(len(items)) if clips is None else np.asarray(clips)
    if per_class <= 0 or len(pool) == 0:
        return []
    predicted = scores[pool].argmax(axis=1)
    rows = []
    for c, name in enumerate(class_names):
        mine = pool[predicted == c]
        candidates = mine if len(mine) else pool
        order = candidates[np.argsort(-scores[candidates, c], kind="stable")][:per_class]
        rows += [
            {
                "audio": str(items[i]),
                "class": name,
                "score": float(scores[i, c]),
                "text": f"(the teacher's {'top' if len(mine) else 'closest'} clip for {name})",
                "method": SUREST,
            }
            for i in order
        ]
    return rows


def audio_sample(assets: ReportAssets) -> list[dict]:
    """The pairs that get a player in report.html (``ReportAssets`` budget): the best-scored
    curated pairs of each class, and for a class with none its ``surest`` rows, so that every
    class can be heard."""
    if assets.audio_samples == 0 or assets.audio_per_class <= 0:
        return []
    by_class = _pairs_by_class(assets.pairs)
    for cls, rows in _pairs_by_class(assets.surest).items():
        by_class.setdefault(cls, rows)
    return _audio_sample(
        dict(sorted(by_class.items())), assets.audio_samples, assets.audio_per_class
    )


def _players(sample: list[dict], seconds: float, sources: list[Preview] | None = None) -> str:
    """A table of players; ``sources`` (one per row) default to inlined previews."""
    if sources is None:
        sources, _ = previews([str(r["audio"]) for r in sample], seconds)
    rows = []
    for row, source in zip(sample, sources, strict=True):
        if source.src is not None:
            player = f'<audio controls preload="none" src="{escape(source.src)}"></audio>'
        else:
            player = f'<span class="muted">no preview: {escape(str(source.error))}</span>'
        rows.append(
            (
                escape(str(row.get("class") or "")),
                player,
                escape(str(row["text"])),
                f"{float(row.get('score', 0.0)):.3f}",
                escape(str(row.get("method", ""))),
                f'<span class="muted">{escape(Path(str(row["audio"])).name)}</span>',
            )
        )
    return _table(["class", "listen", "caption", "score", "method", "file"], rows, numeric_from=3)


def _img(figures: dict[str, bytes], name: str, alt: str, wide: bool = False) -> str:
    """``wide``: wider than the text column (a matrix of many classes needs the room)."""
    cls = ' class="wide"' if wide else ""
    return f'<img alt="{escape(alt)}"{cls} src="{data_uri(figures[name], "image/png")}">'


def _confusion_section(assets: ReportAssets, figures: dict[str, bytes]) -> list[str]:
    parts = []
    if assets.confusion_before is not None and assets.confusion_after is not None:
        parts.append("<h2>Confusions</h2>")
        rows = top_confusions(
            assets.confusion_before,
            assets.confusion_after,
            assets.class_names,
            assets.top_confusions,
        )
        if rows:
            parts.append(
                f'<p class="muted">The {len(rows)} most frequent confusions: test-part '
                "clips of the true class predicted as the other class, counted over all "
                "runs pooled.</p>"
            )
            parts.append(
                _table(
                    CONFUSION_HEADER,
                    [(escape(t), escape(p), str(b), str(a), f"{d:+d}") for t, p, b, a, d in rows],
                    numeric_from=2,
                )
            )
    if "confusion_change.png" in figures:
        parts.append(
            '<p class="muted">After minus before, in percentage points of each true '
            "class's test clips: red cells gained clips (on the diagonal a gain, off it "
            "a new confusion), blue cells lost them.</p>"
        )
        parts.append(_img(figures, "confusion_change.png", "confusion change", wide=True))
    for name, side in (("confusion_before.png", "before"), ("confusion_after.png", "after")):
        if name in figures:
            parts.append(
                f"<details><summary>Confusion matrix {side} (row-normalised)</summary>"
                f"{_img(figures, name, name, wide=True)}</details>"
            )
    return parts


def _precision_section(report: Report) -> list[str]:
    if report.pseudo_precision is None:
        return []
    rows = [(escape(c), n, k, p) for c, n, k, p in precision_rows(report)]
    return [
        "<h3>Pseudo-label precision per class</h3>",
        f'<p class="muted">{escape(precision_line(report))}</p>',
        _table(PRECISION_HEADER, rows),
    ]


def render_html(
    report: Report,
    assets: ReportAssets,
    figures: dict[str, bytes] | None = None,
    players: list[tuple[dict, Preview]] | None = None,
) -> str:
    """The page. ``players``: the sampled pairs with their sources (``write_report`` decides
    inline or linked); by default ``audio_sample(assets)``, inlined."""
    figures = figures or {}
    target, model = report.target, report.model
    title = f"claptune improve: {model.spec} on {target.name}"
    parts = [f"<h1>{escape(title)}</h1>"]
    parts.append(
        f'<p class="muted">{target.n_clips} clips, '
        f"{target.n_classes} classes; {report.n_runs} runs "
        f"({len(report.splits)} splits x {len(report.seeds)} seeds). "
        "Accuracy on the test part of each split (never used for anything but scoring), "
        "mean ± std over runs, in percent.</p>"
    )
    rows = [(escape(a), escape(b), escape(c), escape(d)) for a, b, c, d in headline_rows(report)]
    parts.append('<div class="big">' + _table(["", "before", "after", "change"], rows) + "</div>")
    parts += [f"<p>{escape(line)}</p>" for line in paired_test_lines(report)]
    if report.model_dir:
        parts.append(f'<p class="muted">{escape(saved_model_line(report).replace("`", ""))}</p>')
    if corpus_line(report):
        parts.append(f"<p>{escape(corpus_line(report))}</p>")

    if report.transductive is not None:
        parts.append("<h2>Label-free pipelines side by side</h2>")
        parts.append(
            '<p class="muted">Test parts; <code>+ name</code>: transductive inference over the '
            "test clips taken together; <code>guarded</code>: what the label-free guard hands a "
            "user. Gains in points over the teacher's plain zero-shot ensemble, two-stage 95 % "
            "CI.</p>"
        )
        rows = [tuple(escape(c) for c in row) for row in pipeline_rows(report)]
        parts.append(_table(PIPELINE_HEADER, rows))
        parts += [f"<p>{escape(line)}</p>" for line in guard_lines(report)]

    if "per_class.png" in figures:
        parts.append("<h2>Per class</h2>")
        parts.append(_img(figures, "per_class.png", "per-class accuracy"))
    parts += _confusion_section(assets, figures)

    fg = report.forgetting
    if fg:
        parts.append("<h2>Forgetting check</h2>")
        parts.append(
            f'<p class="muted">Retrieval on {fg.n_pairs} held-out pairs of '
            "the paired corpus (excluded from replay and curation), in percent.</p>"
        )
        rows = [(escape(k), pct(fg.before[k]), spread(fg.after.get(k))) for k in fg.before]
        parts.append(_table(["retrieval", "before", "after"], rows))

    tr = report.transfer
    if tr:
        parts.append("<h2>Transfer check</h2>")
        parts.append(
            f'<p class="muted">Zero-shot accuracy on {tr.n_clips} held-out corpus '
            f"clips whose caption names one of {tr.n_classes} target classes: the "
            "same classes, recorded elsewhere. Clips per class: "
            + escape(", ".join(f"{c} {n}" for c, n in tr.clips_per_class.items()))
            + ".</p>"
        )
        rows = [
            (k.replace("_", " "), pct(getattr(tr.before, k)), spread(getattr(tr.after, k)))
            for k in ("accuracy", "class_mean_accuracy")
        ]
        parts.append(_table(["", "before", "after"], rows))

    cur = report.curation
    by_class = _pairs_by_class(assets.pairs)
    if cur.pairs or cur.per_class or by_class or report.pseudo_precision or report.priors:
        parts.append("<h2>Curated pairs</h2>")
        rows = [(escape(k), spread(s, digits=0, scale=1.0)) for k, s in cur.pairs.items()]
        if rows:
            parts.append(_table(["method", "pairs per run (mean ± std)"], rows))
        parts += [
            f'<p class="muted">{escape(line)}</p>'
            for line in prior_lines(report) + label_free_lines(report)
        ]
        if "priors.png" in figures:
            parts.append(_img(figures, "priors.png", "class priors"))
        parts += _precision_section(report)
        if by_class or assets.surest:
            run = report.model_run
            parts.append(f'<p class="muted">Pairs of split {run.split}, seed {run.seed}.</p>')
            if players is None:
                sample = audio_sample(assets)
                players = list(
                    zip(
                        sample,
                        previews([str(r["audio"]) for r in sample], assets.audio_seconds)[0],
                        strict=True,
                    )
                )
            if players:
                n_classes = len({str(r.get("class")) for r, _ in players})
                fallback = len(
                    {str(r.get("class")) for r, _ in players if r.get("method") == SUREST}
                )
                parts.append("<h3>Listen to what the curation chose</h3>")
                capped = assets.audio_samples is not None and len(players) >= assets.audio_samples
                cap = f", at most {assets.audio_samples} in all" if capped else ""
                instead = (
                    f"; for the {fallback} classes without a curated pair, the clips the teacher "
                    "is surest of"
                    if fallback
                    else ""
                )
                parts.append(
                    f'<p class="muted">{len(players)} clips of {n_classes} classes: the '
                    f"best-scored {assets.audio_per_class} pairs of each class{cap}{instead} "
                    f"(first {assets.audio_seconds:g} s of each clip).</p>"
                )
                parts.append(
                    _players([r for r, _ in players], assets.audio_seconds, [p for _, p in players])
                )
            parts.append("<h3>Top pairs per class</h3>")
            for cls, rows_c in by_class.items():
                top = rows_c[: assets.pairs_per_class]
                table = _table(
                    ["caption", "score", "method", "file"],
                    [
                        (
                            escape(str(r["text"])),
                            f"{float(r.get('score', 0.0)):.3f}",
                            escape(str(r.get("method", ""))),
                            escape(Path(str(r["audio"])).name),
                        )
                        for r in top
                    ],
                )
                parts.append(
                    f"<details><summary>{escape(cls)}: {len(rows_c)} pairs</summary>"
                    f"{table}</details>"
                )

    if report.runs:
        parts.append("<h2>Runs</h2>")
        rows = [
            (
                str(r.split),
                str(r.seed),
                pct(r.before_accuracy),
                pct(r.after_accuracy),
                str(r.n_pairs),
            )
            for r in report.runs
        ]
        parts.append(_table(["split", "seed", "before", "after", "pairs"], rows))
    if mcnemar_lines(report):
        parts.append("<h2>Appendix: pooled McNemar (not valid for this design)</h2>")
        parts += [f'<p class="muted">{escape(line)}</p>' for line in mcnemar_lines(report)]
    parts.append("<h2>Resolved configuration</h2>")
    parts.append(f"<pre>{escape(json.dumps(report.config, indent=2, default=str))}</pre>")
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n"
    )
