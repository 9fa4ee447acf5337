"""report.md of an ``adapt`` run, with its PNG figures beside it."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from claptune.report.markdown import _table

if TYPE_CHECKING:
    from claptune.report.schema import AdaptReport


def render_adapt_markdown(report: AdaptReport, figure_files: Sequence[str] = ()) -> str:
    out = [f"# claptune adapt: {report.model.spec} on {report.target.n_clips} unlabeled clips", ""]
    out += [f"- {line}" for line in summary_lines(report)]
    if report.model_dir:
        out.append(f"- Adapted model: `{report.model_dir}`, loadable with `claptune.load_model`.")
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
        out += _table(["check", "before", "after"], checks)
        out.append("")
    elif note := corpus_note(report):
        out += ["## Forgetting and transfer checks", "", note, ""]
    for name in ("confidence.png", "margin.png", "classes.png"):
        if name in figure_files:
            out += [f"![{name[:-4]}]({name})", ""]
    if report.classes:
        out += [
            "## Per class",
            "",
            "Clip counts; shares and agreement in percent. No label was read.",
            "",
        ]
        out += _table(CLASS_HEADER, class_rows(report))
        out.append("")
    out += [
        "## Resolved configuration",
        "",
        "```json",
        json.dumps(report.config, indent=2, default=str),
        "```",
    ]
    return "\n".join(out) + "\n"


__all__ = ["render_adapt_markdown"]
