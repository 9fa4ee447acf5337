"""The figures of both reports as strings: numbers in percent unless counted, then the lines
and table rows of the ``improve`` report and of the ``adapt`` report, shared by their Markdown
and HTML pages and by the CLI summaries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from claptune.evaluate.label_free import guard_keeps, min_discordant
from claptune.models.class_head import HEAD_FILE
from claptune.textfiles import public_text

if TYPE_CHECKING:
    from claptune.report.schema import AdaptReport, BaseReport, LabelledEval, Report
    from claptune.stats import Spread


def pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}"


def spread(s: Spread | None, digits: int = 1, scale: float = 100.0) -> str:
    """'mean ± std' of a claptune.stats.Spread; percent by default."""
    if s is None or s.mean is None:
        return "n/a"
    return s.format(scale=scale, digits=digits)


def pct_std(mean: float | None, std: float | None, digits: int = 1) -> str:
    """'mean ± std' in percent of one figure and its spread (a missing std counts as 0)."""
    if mean is None:
        return "n/a"
    return f"{100 * mean:.{digits}f} ± {100 * (std or 0.0):.{digits}f}"


def pvalue(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def ci(bs) -> str:
    """'+4.0 [+1.1, +7.1]' in points of a claptune.stats.BootstrapResult."""
    if bs is None:
        return "n/a"
    return f"{100 * bs.difference:+.1f} [{100 * bs.ci_low:+.1f}, {100 * bs.ci_high:+.1f}]"


def corpus_line(report: BaseReport) -> str | None:
    """What a run without a paired corpus skipped, and how to add one (None with a corpus)."""
    from claptune.data.captioned import NO_CORPUS

    return None if report.config.get("corpus") else NO_CORPUS[0].upper() + NO_CORPUS[1:] + "."


# -- improve: over splits x seeds ----------------------------------------------------------------


def headline_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """(figure, before, after, change) rows of the summary table, all in percent."""
    before, after, gain = report.before, report.after, report.gain
    rows = [
        (
            f"accuracy, test parts ({report.n_runs} runs)",
            spread(before.accuracy_spread),
            spread(after.accuracy_spread),
            spread(gain.accuracy_spread),
        )
    ]
    if before.class_mean_accuracy_spread is not None:
        rows.append(
            (
                "class-mean accuracy, test parts",
                spread(before.class_mean_accuracy_spread),
                spread(after.class_mean_accuracy_spread),
                spread(gain.class_mean_accuracy_spread),
            )
        )
    if before.accuracy_all_spread is not None:
        rows.append(
            (
                "accuracy, all clips",
                spread(before.accuracy_all_spread),
                spread(after.accuracy_all_spread),
                spread(gain.accuracy_all_spread),
            )
        )
    return rows


# what the side-by-side tables say of the class head's rows, where they have them
HEAD_LEGEND = (
    "`teacher + class head`: the teacher's prompts moved towards the audio means of the split's "
    "pool (`claptune.evaluate.prototypes`; fitted without labels on the pool alone, then each "
    "test clip scored by itself); `student`: the student with its own class head fitted the same "
    "way (`student, no class head`: its prompts alone)"
)


def class_head_lines(report: Report) -> list[str]:
    """What 'after' is when the students carry a class head, and what the head adds (pooled
    test-part accuracy of the same runs without it, and of the teacher with its own head)."""
    weight = (report.config or {}).get("class_head")
    rows = report.transductive.rows if report.transductive is not None else {}
    plain, student = rows.get("student, no class head"), rows.get("student")
    if not weight or plain is None or student is None:
        return []
    teacher = rows.get("teacher + class head")
    also = f"; the teacher with its own head {pct(teacher.accuracy)} %" if teacher else ""
    return [
        f"'After' is the student with its class head (weight {weight:g}): each class's prompt "
        "embedding moved towards the mean audio embedding of the split's pool clips that "
        "transduction assigns to it, no label read; each test clip is then scored by itself. "
        f"Pooled over the runs: {pct(student.accuracy)} % with it, {pct(plain.accuracy)} % "
        f"without{also} (`--class-head 0` turns it off)."
    ]


def paired_test_lines(report: Report) -> list[str]:
    """The two-stage bootstraps first (splits and clips resampled, a clip scored in several
    splits drawn once: the interval holds the split-to-split spread), then the clip bootstraps
    (splits held fixed). Pooled
    McNemar is not shown here: runs share test clips, so it is not valid (``mcnemar_lines``)."""
    lines = []
    for what, bs in (
        ("accuracy", report.paired_test.two_stage),
        ("class-mean accuracy", report.paired_test.class_mean_two_stage),
    ):
        if bs is not None:
            lines.append(
                f"Gain in {what}, two-stage bootstrap (the {bs.n_units} splits and their test "
                f"clips resampled, a clip shared by splits drawn once; {bs.n_resamples} "
                f"resamples): {pct(bs.difference)} points, "
                f"{int(bs.confidence * 100)} % CI [{pct(bs.ci_low)}, {pct(bs.ci_high)}]"
            )
    for what, bs in (
        ("accuracy", report.paired_test.bootstrap),
        ("class-mean accuracy", report.paired_test.class_mean_bootstrap),
    ):
        if bs is not None:
            lines.append(
                f"Gain in {what}, bootstrap over test clips ({bs.n_units} clips, "
                f"{bs.n_resamples} resamples): {pct(bs.difference)} points, "
                f"{int(bs.confidence * 100)} % CI [{pct(bs.ci_low)}, {pct(bs.ci_high)}], "
                f"p = {pvalue(bs.p_value)}"
            )
    if report.paired_test.two_stage is None:  # a report of an older version: as it was
        lines += mcnemar_lines(report)
    return lines


def mcnemar_lines(report: Report) -> list[str]:
    """Pooled McNemar, for the appendix only: it treats the runs' shared test clips as
    independent outcomes, so its p-value is not valid for this design."""
    mc = report.paired_test.mcnemar
    if mc is None:
        return []
    return [
        f"McNemar on the test parts of all runs pooled ({mc.n} outcomes; NOT VALID here: runs "
        f"share clips, so the outcomes are not independent): {mc.only_after} fixed, "
        f"{mc.only_before} broken; exact p = {pvalue(mc.p_exact)}, mid-p = {pvalue(mc.p_midp)}"
    ]


PIPELINE_HEADER = (
    "pipeline",
    "accuracy",
    "class mean",
    "gain over the teacher [95 % CI]",
    "class-mean gain [95 % CI]",
)


def pipeline_rows(report: Report) -> list[tuple[str, str, str, str, str]]:
    """One row per label-free pipeline on the same test parts (Report.transductive)."""
    tr = report.transductive
    if tr is None:
        return []
    return [
        (name, pct(r.accuracy), pct(r.class_mean_accuracy), ci(r.gain), ci(r.class_mean_gain))
        for name, r in tr.rows.items()
    ]


def guard_over_runs_lines(report: Report) -> list[str]:
    """The guard over the runs: how often it kept the student, and (scored) how often rightly."""
    tr = report.transductive
    if tr is None or not tr.guard:
        return []
    g = tr.guard
    return [
        f"Label-free guard (on each split's test-part audio, labels unread): kept the student in "
        f"{pct(g['kept_student'], 0)} % of {count(int(g['runs']), 'run')}; scored afterwards, "
        f"its decision was right in {pct(g['right'], 0)} % (kept "
        f"{count(int(g['kept_a_worse_student']), 'student')} worse than teacher + "
        f"transduction, rejected {count(int(g['rejected_a_better_student']), 'better one')})."
    ]


def prior_lines(report: Report) -> list[str]:
    """What the curation balanced its pools to, and (scored only) how far from the truth."""
    pr = report.priors
    if pr is None:
        return []
    what = {
        "uniform": "an equal share per class",
        "em": "the pool's class shares estimated without labels (EM)",
    }.get(pr.method, pr.method)
    lines = [f"Pseudo-labels balanced to {what}."]
    if pr.tv is not None:
        lines.append(
            f"Total variation distance to the adaptation pools' true class shares (scored "
            f"after the run): {spread(pr.tv, digits=3, scale=1.0)}; a uniform prior's: "
            f"{spread(pr.tv_uniform, digits=3, scale=1.0)}."
        )
    return lines


def label_free_lines(report: Report) -> list[str]:
    signals = report.label_free or {}
    what = {
        "pseudo_agreement": "agreement with the teacher's refined pseudo-labels, adaptation clips",
        "pseudo_agreement_held_out": "the same, held-out clips' audio",
        "transfer_class_mean": "class-mean accuracy, transfer-check clips",
    }
    lines = [
        f"Label-free ({text}): {spread(signals[k])} %." for k, text in what.items() if k in signals
    ]
    alpha = (report.train or {}).get("wise_alpha")
    if alpha is not None and alpha != 1.0:
        lines.append(
            f"Students kept as weight-space ensembles with the teacher: {alpha:g} x fine-tuned "
            f"+ {1 - alpha:g} x teacher weights (wise_alpha)."
        )
    return lines


CONFUSION_HEADER = ["true class", "predicted class", "before", "after", "change"]


def top_confusions(
    before: np.ndarray, after: np.ndarray, class_names: Sequence[str], k: int = 20
) -> list[tuple[str, str, int, int, int]]:
    """The ``k`` largest off-diagonal cells of two pooled confusion matrices (true x predicted
    counts): (true class, predicted class, count before, count after, after - before).

    Ranked by the larger of the two counts, so a confusion the training removed is listed as
    well as one it created; ties by the change, then by class order (a stable table)."""
    before, after = np.asarray(before, dtype=np.int64), np.asarray(after, dtype=np.int64)
    n = len(class_names)
    cells = [(i, j) for i in range(n) for j in range(n) if i != j and (before[i, j] or after[i, j])]
    cells.sort(key=lambda c: (-max(before[c], after[c]), -abs(after[c] - before[c]), c))
    return [
        (
            class_names[i],
            class_names[j],
            int(before[i, j]),
            int(after[i, j]),
            int(after[i, j] - before[i, j]),
        )
        for i, j in cells[:k]
    ]


PRECISION_HEADER = ["class", "pseudo pairs", "true class named", "precision (%)"]


def precision_rows(report: Report) -> list[tuple[str, str, str, str]]:
    """Pseudo-label precision per class (classes with pairs first, worst first), then the total."""
    pp = report.pseudo_precision
    if pp is None:
        return []
    order = sorted(
        pp.per_class.items(),
        key=lambda kv: (kv[1].precision is None, kv[1].precision or 0.0, kv[0]),
    )
    rows = [(c, str(v.n), str(v.correct), pct(v.precision)) for c, v in order]
    return rows + [("all classes", str(pp.n), str(pp.correct), pct(pp.precision))]


def precision_line(report: Report) -> str:
    pp = report.pseudo_precision
    if pp is None:
        return ""
    return (
        f"Pseudo-label precision of split {pp.split} ({', '.join(pp.methods)} pairs whose "
        f"audio is a target clip; scored after the run from the target's labels, never used "
        f"for a choice): {pct(pp.precision)} % of {pp.n} pairs name the clip's true class."
    )


def saved_model_line(report: Report) -> str:
    """What RUN/model holds and why."""
    run = report.model_run
    if run.saved == "student":
        what = (
            f"a student trained after the measured runs on {run.n_clips} of the "
            f"{report.target.n_clips} clips (no label read; the rest held out for the guard), "
            "kept by the label-free guard"
        )
    elif run.saved == "teacher":
        what = (
            "the teacher: the label-free guard found the student trained on all clips not "
            "clearly better than teacher + transduction on the held-out clips"
        )
    else:  # a report of an older version
        what = f"the student of split {run.split}, seed {run.seed}"
    where = public_text(report.model_dir)  # the run folder's model/, beside this report
    head = class_head_sentence(report.model_dir)
    return f"Saved model: `{where}/` ({what}), loadable with `claptune.load_model`.{head}" + (
        rejected_student_line(report.student_dir) if report.student_dir else ""
    )


def class_head_sentence(model_dir: str | None) -> str:
    """' Its class head ... goes with it ...' when ``model_dir`` holds one, else ''."""
    if not model_dir or not (Path(model_dir) / HEAD_FILE).is_file():
        return ""
    return (
        f" Its class head (`{HEAD_FILE}`, fitted on every clip without a label) goes with it: "
        "`claptune zeroshot` scores these classes with it (`--no-class-head`: the prompts "
        "alone)."
    )


def rejected_student_line(student_dir: str) -> str:
    """What RUN/student holds (``--keep-student``), a sentence to append."""
    return (
        f" The student the guard did not keep is in `{public_text(student_dir)}/` "
        "(--keep-student): for classifying single clips without transduction, where the "
        "guard's comparison does not apply; nothing label-free vouches for it on these clips."
    )


# -- adapt: one run, no label -----------------------------------------------------------------


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
    seen = ""
    if ag is not None and ag.n_clips < report.target.n_clips:
        seen = f" of the {ag.n_clips} curation saw"  # the guard's slice is held out
    if ag is not None:
        line = (
            f"Teacher/student agreement: {pct(ag.share)} % of clips{seen} keep their zero-shot "
            "class"
        )
        if ag.curated is not None and ag.not_curated is not None:
            line += (
                f" ({pct(ag.curated)} % of curated clips, {pct(ag.not_curated)} % of the others)"
            )
        lines.append(line + ".")
    agree = (report.label_free or {}).get("pseudo_agreement")
    if agree is not None:
        lines.append(
            f"Student/refined pseudo-label agreement: {pct(agree)} % of clips{seen} (the "
            "label-free "
            "signal claptune ablate chooses configurations by; compare runs of other settings "
            "on the same clips by it, higher is better)."
        )
    return lines


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
                f"transfer check accuracy ({tr.n_clips} clips"
                # on a handful of clips the figure is mostly noise: say how coarse it is
                + (
                    f"; one clip moves it {100 / tr.n_clips:.0f} points)"
                    if tr.n_clips < 20
                    else ")"
                ),
                pct(tr.before.accuracy),
                pct(tr.after.accuracy.mean),
            ),
            (
                f"transfer check class-mean accuracy ({count(tr.n_classes, 'class', 'classes')})",
                pct(tr.before.class_mean_accuracy),
                pct(tr.after.class_mean_accuracy.mean),
            ),
        ]
    return rows


def class_rows(report: AdaptReport) -> list[tuple[str, ...]]:
    """(class, balanced share %, pseudo-labels, curated, teacher, student, unchanged %,
    labelled in predictions.csv)."""
    return [
        (
            c,
            pct(r.share),
            str(r.pseudo_labels),
            str(r.curated),
            str(r.teacher),
            str(r.student),
            pct(r.unchanged),
            "" if r.labelled is None else str(r.labelled),
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
    "teacher's clips the student keeps (%)",
    "labelled (predictions.csv)",
]


def class_table_note(report: AdaptReport) -> str:
    """Which clips the per-class counts cover: curation's (the guard's slice held out) and,
    for the labels, every clip."""
    n_all = report.target.n_clips
    n_seen = report.agreement.n_clips if report.agreement else n_all
    held = n_all - n_seen
    scope = (
        f"the {n_seen} clips curation saw (the guard's {count(held, 'clip')} held out)"
        if held
        else f"all {n_all} clips"
    )
    return (
        f"Clip counts over {scope}; the labels of predictions.csv over all {n_all} clips. "
        "Shares and agreement in percent. No label was read."
    )


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


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 class' / '3 classes': a count with its noun in the right number."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def clips_were(n: int) -> str:
    """'1 was' / '3 were': the count of clips as the subject of a sentence."""
    return f"{n} {'was' if n == 1 else 'were'}"


def undecided_reason(n_clips: int, discordant: int) -> str:
    """Why the guard could not decide, in the words the console and the reports share: 'on N
    clips held out of curation only D were classed consistently by one model and not the
    other, fewer than the 5 a lead beyond chance needs (no label read)'."""
    return (
        f"on {n_clips} clips held out of curation only {clips_were(discordant)} classed "
        "consistently by one model and not the other, fewer than the "
        f"{min_discordant()} a lead beyond chance needs (no label read)"
    )


def guard_lines(report: AdaptReport) -> list[str]:
    """What the user got and why: the guard's decision in words, then predictions.csv."""
    g, out = report.guard, []
    kept = "saved" if report.model_dir else "kept (no model written)"
    if "keep_student" in g:
        n = int(g["n_clips"])
        cs, ct = 100 * g["consistency_student"], 100 * g["consistency_teacher"]
        test = f"; sign test p = {g['p_value']:.3g}" if "p_value" in g else ""
        if guard_keeps(g):
            out.append(
                f"Guard: the adapted student is kept. On {n} clips held out of curation it agreed "
                f"with its own transductive labels on {cs:.0f} % of them, the teacher on {ct:.0f} "
                f"% (no label read{test})."
            )
        elif not g.get("decidable", True):
            out.append(
                f"Guard: **could not decide**: {undecided_reason(n, int(g['discordant']))}. "
                f"The teacher is {kept}; more clips, or a larger `--guard-fraction`, let the "
                "guard decide."
            )
        else:
            out.append(
                f"Guard: **the adapted student did not clearly beat the teacher** on {n} clips "
                f"held out of curation (consistency {cs:.0f} % vs the teacher's {ct:.0f} %{test}, "
                f"no label read): the teacher is {kept}."
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
