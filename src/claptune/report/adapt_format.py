"""The tables of an ``adapt`` report as rows of strings, shared by its Markdown and HTML pages
and the CLI summary (numbers in percent unless counted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from claptune.report.format import pct, pvalue

if TYPE_CHECKING:
    from claptune.report.schema import AdaptReport, LabelledEval


def summary_lines(report: AdaptReport) -> list[str]:
    """The run in a few sentences, none of which needs a label."""
    lines = [
        f"{report.target.n_clips} unlabeled clips, {report.target.n_classes} classes; "
        f"curated {report.n_pairs.get('total', 0)} pseudo pairs "
        f"({', '.join(report.methods) or 'none'}), fine-tuned with the {report.loss} loss "
        f"(seed {report.seed})."
    ]
    if report.priors:
        lines.append(f"Class shares curation balanced to: {report.priors.method}.")
    ag = report.agreement
    if ag is not None:
        line = f"Teacher/student agreement: {pct(ag.share)} % of clips keep their zero-shot class"
        if ag.curated is not None and ag.not_curated is not None:
            line += (
                f" ({pct(ag.curated)} % of curated clips, {pct(ag.not_curated)} % of the others)"
            )
        lines.append(line + ".")
    agree = (report.label_free or {}).get("pseudo_agreement")
    if agree is not None:
        lines.append(
            f"Student/refined pseudo-label agreement: {pct(agree)} % of clips (the label-free "
            "signal claptune ablate chooses configurations by; compare runs of other settings "
            "on the same clips by it, higher is better)."
        )
    return lines


def corpus_note(report: AdaptReport) -> str | None:
    """What the run skipped for want of a paired corpus (None when it had one)."""
    from claptune.data.captioned import NO_CORPUS

    return None if report.config.get("corpus") else NO_CORPUS[0].upper() + NO_CORPUS[1:] + "."


def check_rows(report: AdaptReport) -> list[tuple[str, str, str]]:
    """(check, before, after) of the forgetting and transfer checks."""
    rows = []
    fg = report.forgetting
    if fg:
        rows += [
            (f"held-out corpus {k}", pct(fg.before[k]), pct(fg.after[k].mean)) for k in fg.before
        ]
    tr = report.transfer
    if tr:
        rows += [
            (
                f"transfer check accuracy ({tr.n_clips} clips)",
                pct(tr.before.accuracy),
                pct(tr.after.accuracy.mean),
            ),
            (
                f"transfer check class-mean accuracy ({tr.n_classes} classes)",
                pct(tr.before.class_mean_accuracy),
                pct(tr.after.class_mean_accuracy.mean),
            ),
        ]
    return rows


def class_rows(report: AdaptReport) -> list[tuple[str, ...]]:
    """(class, balanced share %, pseudo-labels, curated, teacher, student, unchanged %)."""
    return [
        (
            c,
            pct(r.share),
            str(r.pseudo_labels),
            str(r.curated),
            str(r.teacher),
            str(r.student),
            pct(r.unchanged),
        )
        for c, r in report.classes.items()
    ]


CLASS_HEADER = [
    "class",
    "balanced share (%)",
    "pseudo-labels",
    "curated",
    "teacher predicts",
    "student predicts",
    "unchanged (%)",
]


def eval_lines(ev: LabelledEval) -> list[str]:
    lines = [
        f"{ev.target} ({ev.n_clips} labelled clips, {ev.n_classes} classes; scored only, "
        f"{ev.overlap} of them were adaptation clips, used without labels): "
        f"accuracy {pct(ev.before.accuracy)} -> {pct(ev.after.accuracy)} %, class-mean "
        f"accuracy {pct(ev.before.class_mean_accuracy)} -> "
        f"{pct(ev.after.class_mean_accuracy)} %"
    ]
    for name, bs in (("accuracy", ev.bootstrap), ("class-mean accuracy", ev.class_mean_bootstrap)):
        if bs is not None:
            lines.append(
                f"{name} change {pct(bs.difference)} points, "
                f"{int(bs.confidence * 100)} % CI [{pct(bs.ci_low)}, {pct(bs.ci_high)}] "
                f"(paired bootstrap over clips), p = {pvalue(bs.p_value)}"
            )
    return lines


__all__ = [
    "CLASS_HEADER",
    "check_rows",
    "class_rows",
    "eval_lines",
    "guard_lines",
    "summary_lines",
]


def guard_lines(report: AdaptReport) -> list[str]:
    """What the user got and why: the guard's decision in words, then predictions.csv."""
    g, out = report.guard, []
    if "keep_student" in g:
        n = int(g["n_clips"])
        cs, ct = 100 * g["consistency_student"], 100 * g["consistency_teacher"]
        if g["keep_student"] >= 0.5:
            out.append(
                f"Guard: the adapted student is kept. On {n} clips held out of curation it agreed "
                f"with its own transductive labels on {cs:.0f} % of them, the teacher on {ct:.0f} "
                "% (no label read)."
            )
        else:
            out.append(
                f"Guard: **the adapted student did not beat the teacher** on {n} clips held out "
                f"of curation (consistency {cs:.0f} % vs the teacher's {ct:.0f} %, no label "
                "read): the teacher is saved."
            )
    else:
        out.append("Guard: not run (no clips were held out of curation; guard_fraction 0).")
    p = report.predictions
    if p:
        top = sorted(p.get("counts", {}).items(), key=lambda kv: -kv[1])[:5]
        shown = ", ".join(f"{c} {k}" for c, k in top)
        out.append(
            f"Labels for every clip: `predictions.csv` ({p.get('n_clips')} clips; "
            f"the {p.get('model', report.saved)}'s scores with {p.get('transduction')} "
            "transduction; most frequent: "
            f"{shown})."
        )
    return out
