"""The report of an ``improve`` run: report.json, report.md and a self-contained report.html.

``write_report(out_dir, report, assets)`` takes the run's ``Report`` (the typed schema of
report.json, ``claptune.report.schema``) and the arrays the figures need, and writes:
- ``report.json``: the summary itself, the machine-readable record;
- ``report.md`` plus the PNG figures beside it;
- ``report.html``: one page with the figures and up to ``audio_per_class`` curated pairs of
  every class as playable audio (for a class with none, the clips the teacher is surest of),
  embedded as base64 ``data:`` URIs so that it opens offline and can be mailed; when that would
  pass ``max_page_bytes`` (~20 MB) the previews are written to ``audio/`` beside it and linked
  instead (the page then needs that folder). The pieces are ``claptune.report.page``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from claptune.report.format import (
    CONFUSION_HEADER,
    HEAD_LEGEND,
    PIPELINE_HEADER,
    PRECISION_HEADER,
    class_head_lines,
    corpus_line,
    count,
    guard_over_runs_lines,
    headline_rows,
    label_free_lines,
    mcnemar_lines,
    paired_test_lines,
    pct,
    pct_std,
    pipeline_rows,
    precision_line,
    precision_rows,
    prior_lines,
    saved_model_line,
    spread,
    top_confusions,
)
from claptune.report.page import (
    SUREST,
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
    sample_players,
    write_pages,
)
from claptune.report.plots import confusion_diff_plot, confusion_plot, per_class_bars, prior_bars
from claptune.report.schema import Report


@dataclass
class ReportAssets(PlayerAssets):
    """What the figures and the confusion table need beyond the JSON summary (the curated pairs
    and the players' budget: ``PlayerAssets``)."""

    class_names: list[str]
    confusion_before: np.ndarray | None = None  # (C, C) counts, true x predicted, test parts
    confusion_after: np.ndarray | None = None
    audio_samples: int | None = None  # cap on all players (spread over classes); None: no cap
    top_confusions: int = 20  # rows of the top-confusions table


def improve_figures(report: Report, assets: ReportAssets) -> dict[str, bytes]:
    """The report's PNG figures by file name: per class, confusions, the class priors."""
    figs: dict[str, bytes] = {}
    names = assets.class_names
    before, after = report.before, report.after
    if before.per_class and after.per_class:

        def values(got: dict[str, float | None]) -> list[float]:  # None (never scored) -> NaN
            return [np.nan if got.get(c) is None else got[c] for c in names]

        figs["per_class.png"] = per_class_bars(
            names,
            values(before.per_class),
            values(after.per_class),
            values(before.per_class_std),
            values(after.per_class_std),
        )
    if assets.confusion_before is not None:
        figs["confusion_before.png"] = confusion_plot(
            assets.confusion_before, names, "before: test parts, all runs pooled"
        )
    if assets.confusion_after is not None:
        figs["confusion_after.png"] = confusion_plot(
            assets.confusion_after, names, "after: test parts, all runs pooled"
        )
    if assets.confusion_before is not None and assets.confusion_after is not None:
        figs["confusion_change.png"] = confusion_diff_plot(
            assets.confusion_before,
            assets.confusion_after,
            names,
            "after − before: test parts, all runs pooled",
        )
    prior = report.priors.splits[0] if report.priors and report.priors.splits else None
    if prior is not None and prior.estimated:
        figs["priors.png"] = prior_bars(names, prior.estimated, prior.true, prior.split)
    return figs


def audio_sample(assets: ReportAssets) -> list[dict]:
    """The pairs that get a player in report.html (``ReportAssets`` budget): the best-scored
    curated pairs of each class, and for a class with none its ``surest`` rows, so that every
    class can be heard."""
    if assets.audio_samples == 0 or assets.audio_per_class <= 0:
        return []
    by_class = pairs_by_class(assets.pairs)
    for cls, rows in pairs_by_class(assets.surest).items():
        by_class.setdefault(cls, rows)
    return sample_players(
        dict(sorted(by_class.items())), assets.audio_samples, assets.audio_per_class
    )


def render_markdown(report: Report, assets: ReportAssets, figure_files: Sequence[str] = ()) -> str:
    """report.md; ``figure_files``: the PNGs written beside it."""
    target, model = report.target, report.model
    out = [
        f"{target.n_clips} clips, {target.n_classes} classes; "
        f"{report.n_runs} runs ({len(report.splits)} splits x "
        f"{len(report.seeds)} seeds). Figures are mean ± std over runs, in percent.",
        "",
    ]
    out += md_table(["figure", "before", "after", "change"], headline_rows(report))
    out.append("")
    for line in class_head_lines(report) + paired_test_lines(report):
        out.append(f"- {line}")
    if report.model_dir:
        out.append(f"- {saved_model_line(report)}")
    if corpus_line(report):
        out.append(f"- {corpus_line(report)}")
    out.append("")
    if report.transductive is not None:
        out.append("## Label-free pipelines side by side (test parts)")
        out.append("")
        heads = "teacher + class head" in report.transductive.rows
        out.append(
            "Each pipeline labels the test part of each split from audio alone; `+ name`: "
            "transductive inference over all the target's clips taken together (pool and test "
            "part, no label read), scored on the test part (`+ claptune`: the tool's own "
            "chain, label propagation over each clip's 3 nearest clips then Sinkhorn balancing, "
            "no training); "
            + (HEAD_LEGEND + ", the 'after' of the table above; " if heads else "")
            + f"`student + transduction` uses `{report.transductive.method}`; "
            "`guarded`: what the label-free guard hands a user. Accuracy and class mean pooled "
            "over the runs' test outcomes, in percent; gains in points over the teacher's plain "
            "zero-shot ensemble from the same pooled estimator, two-stage 95 % CI."
        )
        out.append("")
        out += md_table(PIPELINE_HEADER, pipeline_rows(report))
        out.append("")
        out += [f"- {line}" for line in guard_over_runs_lines(report)]
        out.append("")
    cur = report.curation
    if cur.pairs or cur.per_class:
        out.append("## Curated pairs")
        out.append("")
        rows = [(name, spread(s, digits=0, scale=1.0)) for name, s in cur.pairs.items()]
        out += md_table(["method", "pairs per run"], rows)
        out.append("")
        out += [f"- {line}" for line in prior_lines(report) + label_free_lines(report)]
        out.append("")
    if report.pseudo_precision is not None:
        out.append("## Pseudo-label precision per class")
        out.append("")
        out.append(precision_line(report))
        out.append("")
        out += md_table(PRECISION_HEADER, precision_rows(report))
        out.append("")
    if assets.confusion_before is not None and assets.confusion_after is not None:
        rows = top_confusions(
            assets.confusion_before,
            assets.confusion_after,
            assets.class_names,
            assets.top_confusions,
        )
        if rows:
            out.append("## Top confusions (test parts, all runs pooled)")
            out.append("")
            out += md_table(CONFUSION_HEADER, [(t, p, b, a, f"{d:+d}") for t, p, b, a, d in rows])
            out.append("")
    fg = report.forgetting
    if fg:
        out.append("## Forgetting check (held-out paired corpus)")
        out.append("")
        rows = [(k, pct(fg.before[k]), spread(fg.after.get(k))) for k in fg.before]
        out += md_table(["retrieval", "before", "after"], rows)
        out.append("")
    tr = report.transfer
    if tr:
        out.append("## Transfer check (target classes, recordings from other sources)")
        out.append("")
        out.append(
            f"{tr.n_clips} held-out corpus clips whose caption names one of "
            f"{tr.n_classes} target classes; zero-shot accuracy."
        )
        out.append("")
        rows = [
            (k.replace("_", " "), pct(getattr(tr.before, k)), spread(getattr(tr.after, k)))
            for k in ("accuracy", "class_mean_accuracy")
        ]
        out += md_table(["", "before", "after"], rows)
        out.append("")
    for name in figure_files:
        out += md_figure(name, name)
    before, after = report.before, report.after
    if before.per_class:
        out.append("## Per class (test parts)")
        out.append("")
        counts = cur.per_class
        rows = [
            (
                c,
                pct_std(before.per_class[c], before.per_class_std.get(c)),
                pct_std(after.per_class[c], after.per_class_std.get(c)),
                f"{counts.get(c, 0):.0f}",
            )
            for c in assets.class_names
        ]
        out += md_table(["class", "before", "after", "curated pairs per run"], rows)
        out.append("")
    if report.runs:
        out.append("## Runs")
        out.append("")
        rows = [
            (
                r.split,
                r.seed,
                pct(r.before_accuracy),
                pct(r.after_accuracy),
                pct(r.before_class_mean_accuracy),
                pct(r.after_class_mean_accuracy),
                r.n_pairs,
            )
            for r in report.runs
        ]
        out += md_table(
            ["split", "seed", "before", "after", "class-mean before", "class-mean after", "pairs"],
            rows,
        )
        out.append("")
    if mcnemar_lines(report):
        out.append("## Appendix: pooled McNemar (not valid for this design)")
        out.append("")
        out += [f"- {line}" for line in mcnemar_lines(report)]
        out.append("")
    out += md_config(report.config)
    return md_page(f"claptune improve: {model.spec} on {target.name}", out)


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
                html_table(
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
        parts.append(html_img(figures, "confusion_change.png", "confusion change", wide=True))
    for name, side in (("confusion_before.png", "before"), ("confusion_after.png", "after")):
        if name in figures:
            parts.append(
                f"<details><summary>Confusion matrix {side} (row-normalised)</summary>"
                f"{html_img(figures, name, name, wide=True)}</details>"
            )
    return parts


def _precision_section(report: Report) -> list[str]:
    if report.pseudo_precision is None:
        return []
    rows = [(escape(c), n, k, p) for c, n, k, p in precision_rows(report)]
    return [
        "<h3>Pseudo-label precision per class</h3>",
        f'<p class="muted">{escape(precision_line(report))}</p>',
        html_table(PRECISION_HEADER, rows),
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
    parts = [
        f'<p class="muted">{target.n_clips} clips, '
        f"{target.n_classes} classes; {report.n_runs} runs "
        f"({len(report.splits)} splits x {len(report.seeds)} seeds). "
        "Accuracy on the test part of each split (never used for anything but scoring), "
        "mean ± std over runs, in percent.</p>"
    ]
    rows = [(escape(a), escape(b), escape(c), escape(d)) for a, b, c, d in headline_rows(report)]
    parts.append(
        '<div class="big">' + html_table(["", "before", "after", "change"], rows) + "</div>"
    )
    parts += [
        f"<p>{escape(line)}</p>" for line in class_head_lines(report) + paired_test_lines(report)
    ]
    if report.model_dir:
        parts.append(f'<p class="muted">{md_code_to_html(saved_model_line(report))}</p>')
    if corpus_line(report):
        parts.append(f"<p>{escape(corpus_line(report))}</p>")

    if report.transductive is not None:
        parts.append("<h2>Label-free pipelines side by side</h2>")
        parts.append(
            '<p class="muted">Test parts; <code>+ name</code>: transductive inference over all '
            "the target's clips taken together (no label read), scored on the test part; "
            + (
                md_code_to_html(HEAD_LEGEND) + "; "
                if "teacher + class head" in report.transductive.rows
                else ""
            )
            + "<code>guarded</code>: what the label-free guard hands a "
            "user. Gains in points over the teacher's plain zero-shot ensemble, two-stage 95 % "
            "CI.</p>"
        )
        rows = [tuple(escape(c) for c in row) for row in pipeline_rows(report)]
        parts.append(html_table(PIPELINE_HEADER, rows))
        parts += [f"<p>{escape(line)}</p>" for line in guard_over_runs_lines(report)]

    if "per_class.png" in figures:
        parts.append("<h2>Per class</h2>")
        parts.append(html_img(figures, "per_class.png", "per-class accuracy"))
    parts += _confusion_section(assets, figures)

    fg = report.forgetting
    if fg:
        parts.append("<h2>Forgetting check</h2>")
        parts.append(
            f'<p class="muted">Retrieval on {fg.n_pairs} held-out pairs of '
            "the paired corpus (excluded from replay and curation), in percent.</p>"
        )
        rows = [(escape(k), pct(fg.before[k]), spread(fg.after.get(k))) for k in fg.before]
        parts.append(html_table(["retrieval", "before", "after"], rows))

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
        parts.append(html_table(["", "before", "after"], rows))

    cur = report.curation
    by_class = pairs_by_class(assets.pairs)
    if cur.pairs or cur.per_class or by_class or report.pseudo_precision or report.priors:
        parts.append("<h2>Curated pairs</h2>")
        rows = [(escape(k), spread(s, digits=0, scale=1.0)) for k, s in cur.pairs.items()]
        if rows:
            parts.append(html_table(["method", "pairs per run (mean ± std)"], rows))
        parts += [
            f'<p class="muted">{escape(line)}</p>'
            for line in prior_lines(report) + label_free_lines(report)
        ]
        if "priors.png" in figures:
            parts.append(html_img(figures, "priors.png", "class priors"))
        parts += _precision_section(report)
        if by_class or assets.surest:
            run = report.model_run
            parts.append(f'<p class="muted">Pairs of split {run.split}, seed {run.seed}.</p>')
            if players is None:
                players = inline_players(audio_sample(assets), assets.audio_seconds)
            if players:
                n_classes = len({str(r.get("class")) for r, _ in players})
                fallback = len(
                    {str(r.get("class")) for r, _ in players if r.get("method") == SUREST}
                )
                parts.append("<h3>Listen to what the curation chose</h3>")
                capped = assets.audio_samples is not None and len(players) >= assets.audio_samples
                cap = f", at most {assets.audio_samples} in all" if capped else ""
                instead = (
                    f"; for the {count(fallback, 'class', 'classes')} without a curated pair, the "
                    "clips the teacher is surest of"
                    if fallback
                    else ""
                )
                parts.append(
                    f'<p class="muted">{count(len(players), "clip")} of '
                    f"{count(n_classes, 'class', 'classes')}: the "
                    f"best-scored {count(assets.audio_per_class, 'pair')} of each class"
                    f"{cap}{instead} "
                    f"(first {assets.audio_seconds:g} s of each clip).</p>"
                )
                parts.append(players_table(players))
            parts.append("<h3>Top pairs per class</h3>")
            for cls, rows_c in by_class.items():
                top = rows_c[: assets.pairs_per_class]
                table = pairs_table(top)
                parts.append(
                    f"<details><summary>{escape(cls)}: {count(len(rows_c), 'pair')}</summary>"
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
        parts.append(html_table(["split", "seed", "before", "after", "pairs"], rows))
    if mcnemar_lines(report):
        parts.append("<h2>Appendix: pooled McNemar (not valid for this design)</h2>")
        parts += [f'<p class="muted">{escape(line)}</p>' for line in mcnemar_lines(report)]
    parts += html_config(report.config)
    return html_page(f"claptune improve: {model.spec} on {target.name}", parts)


def write_report(out_dir: str | Path, report: Report, assets: ReportAssets) -> dict[str, Path]:
    """Write report.json, report.md (+ PNGs) and report.html into ``out_dir``."""
    figs = improve_figures(report, assets)
    return write_pages(
        out_dir,
        report,
        figs,
        render_markdown(report, assets, figure_files=list(figs)),
        lambda players: render_html(report, assets, figures=figs, players=players),
        audio_sample(assets),
        assets,
    )


__all__ = [
    "ReportAssets",
    "audio_sample",
    "improve_figures",
    "render_html",
    "render_markdown",
    "write_report",
]
