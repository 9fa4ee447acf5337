"""report.md: the run's summary as Markdown, with the PNG figures written beside it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    pct_std,
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


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: Report, assets: ReportAssets, figure_files: Sequence[str] = ()) -> str:
    target, model = report.target, report.model
    out = [f"# claptune improve: {model.spec} on {target.name}", ""]
    out.append(
        f"{target.n_clips} clips, {target.n_classes} classes; "
        f"{report.n_runs} runs ({len(report.splits)} splits x "
        f"{len(report.seeds)} seeds). Figures are mean ± std over runs, in percent."
    )
    out.append("")
    out += _table(["figure", "before", "after", "change"], headline_rows(report))
    out.append("")
    for line in paired_test_lines(report):
        out.append(f"- {line}")
    if report.model_dir:
        out.append(f"- {saved_model_line(report)}")
    if corpus_line(report):
        out.append(f"- {corpus_line(report)}")
    out.append("")
    if report.transductive is not None:
        out.append("## Label-free pipelines side by side (test parts)")
        out.append("")
        out.append(
            f"Each pipeline labels the test part of each split from audio alone; `+ name`: "
            f"transductive inference over the test clips taken together; `student + "
            f"transduction` uses `{report.transductive.method}`; `guarded`: what the label-free "
            "guard hands a user. Means over runs in percent; gains in points over the teacher's "
            "plain zero-shot ensemble, two-stage 95 % CI."
        )
        out.append("")
        out += _table(PIPELINE_HEADER, pipeline_rows(report))
        out.append("")
        out += [f"- {line}" for line in guard_lines(report)]
        out.append("")
    cur = report.curation
    if cur.pairs or cur.per_class:
        out.append("## Curated pairs")
        out.append("")
        rows = [(name, spread(s, digits=0, scale=1.0)) for name, s in cur.pairs.items()]
        out += _table(["method", "pairs per run"], rows)
        out.append("")
        out += [f"- {line}" for line in prior_lines(report) + label_free_lines(report)]
        out.append("")
    if report.pseudo_precision is not None:
        out.append("## Pseudo-label precision per class")
        out.append("")
        out.append(precision_line(report))
        out.append("")
        out += _table(PRECISION_HEADER, precision_rows(report))
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
            out += _table(CONFUSION_HEADER, [(t, p, b, a, f"{d:+d}") for t, p, b, a, d in rows])
            out.append("")
    fg = report.forgetting
    if fg:
        out.append("## Forgetting check (held-out paired corpus)")
        out.append("")
        rows = [(k, pct(fg.before[k]), spread(fg.after.get(k))) for k in fg.before]
        out += _table(["retrieval", "before", "after"], rows)
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
        out += _table(["", "before", "after"], rows)
        out.append("")
    for name in figure_files:
        out.append(f"![{name}]({name})")
        out.append("")
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
        out += _table(["class", "before", "after", "curated pairs per run"], rows)
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
        out += _table(
            ["split", "seed", "before", "after", "class-mean before", "class-mean after", "pairs"],
            rows,
        )
        out.append("")
    if mcnemar_lines(report):
        out.append("## Appendix: pooled McNemar (not valid for this design)")
        out.append("")
        out += [f"- {line}" for line in mcnemar_lines(report)]
        out.append("")
    out.append("## Resolved configuration")
    out.append("")
    out.append("```json")
    out.append(json.dumps(report.config, indent=2, default=str))
    out.append("```")
    return "\n".join(out) + "\n"
