"""``ablate``: the paper's comparison on one set of splits and seeds.

Every configuration (a curation method with the hard or the soft loss) is trained on the
same splits with the same seeds from the same teacher, so differences between rows are
differences between methods, not between splits. The baseline is the teacher itself; the
replay-only rows fine-tune on the corpus alone, to separate the effect of curated pairs from
the effect of further training. Curation runs once per (split, method) and is shared by both
losses and all seeds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from claptune.errors import printable
from claptune.improve.config import CURATION_METHODS, LOSSES, ImproveConfig
from claptune.improve.loop import Runner, Training, Variant
from claptune.improve.runs import (
    RunOutcome,
    summarize_label_free,
    summarize_priors,
    summarize_runs,
)
from claptune.improve.workspace import Workspace, log_progress
from claptune.report.format import HEAD_LEGEND, ci, count, pvalue
from claptune.report.records import Ablation, AblationRow
from claptune.report.schema import ClassPriors, RunsSummary
from claptune.stats import Spread
from claptune.typed import override

# the label-free selection signal the table's "label-free pick" maximises (RunRecord.label_free):
# the students' agreement with the teacher's refined pseudo-labels on the adaptation clips,
# chosen among the signals of ``claptune.improve.runs.label_free_signals`` on the skewed
# benchmark's own class orders (docs/improve.md, "Choosing without labels")
SIGNAL = "pseudo_agreement"


@dataclass(frozen=True)
class AblationEntry:
    methods: tuple[str, ...]  # () with a loss: replay-only fine-tuning
    loss: str | None  # None: the teacher, untouched (baseline)
    # curation settings of this row on top of the run's (e.g. (("pseudo_refined_prior", "em"),))
    curation: tuple[tuple[str, Any], ...] = ()
    label: str | None = None  # a name for the row instead of methods / loss

    @property
    def name(self) -> str:
        if self.loss is None:
            return "baseline (teacher)"
        base = f"{'+'.join(self.methods) or 'replay only'} / {self.loss}"
        return f"{base} ({self.label})" if self.label else base


DEFAULT_ENTRIES = ("ds", "pseudo_refined", "pseudo", ("ds", "pseudo_refined"), "ads", "a2a", "du")


def ablation_grid(
    methods=DEFAULT_ENTRIES, losses=LOSSES, replay_only: bool = True
) -> list[AblationEntry]:
    """Baseline, the replay-only controls, then each entry of ``methods`` (a method name or a
    tuple of methods curated together) with each loss."""
    grid = [AblationEntry((), None)]
    if replay_only:
        grid += [AblationEntry((), loss) for loss in losses]
    entries = [(m,) if isinstance(m, str) else tuple(m) for m in methods]
    unknown = sorted({m for e in entries for m in e} - set(CURATION_METHODS))
    if unknown:
        raise ValueError(f"unknown curation method(s) {unknown}")
    grid += [AblationEntry(e, loss) for e in entries for loss in losses]
    return grid


def _row(
    entry: AblationEntry,
    summary: RunsSummary,
    runs: list[RunOutcome],
    seconds: float,
    priors: ClassPriors | None = None,
) -> AblationRow:
    """One row of ablation.json: the entry's figures from the report schema."""
    retrieval = [r.retrieval_after for r in runs if r.retrieval_after]
    label_free = summarize_label_free(summary.runs)
    test = summary.paired_test
    return AblationRow(
        name=entry.name,
        methods=list(entry.methods),
        loss=entry.loss,
        curation=dict(entry.curation),
        n_runs=summary.n_runs,
        before=summary.before.accuracy_spread,
        after=summary.after.accuracy_spread,
        gain=summary.gain.accuracy_spread,
        after_all=summary.after.accuracy_all_spread,
        class_mean_before=summary.before.class_mean_accuracy_spread,
        class_mean_after=summary.after.class_mean_accuracy_spread,
        class_mean_gain=summary.gain.class_mean_accuracy_spread,
        mcnemar=test.mcnemar,
        bootstrap=test.bootstrap,
        class_mean_bootstrap=test.class_mean_bootstrap,
        two_stage=test.two_stage,
        class_mean_two_stage=test.class_mean_two_stage,
        pipelines=dict(summary.transductive.rows) if summary.transductive else {},
        guard=dict(summary.transductive.guard) if summary.transductive else {},
        prior_tv=None if priors is None or priors.tv is None else priors.tv.mean,
        prior_tv_uniform=None
        if priors is None or priors.tv_uniform is None
        else priors.tv_uniform.mean,
        label_free=label_free[SIGNAL].mean if SIGNAL in label_free else None,
        label_free_signals={k: v.mean for k, v in label_free.items()},
        pairs=summary.curation.pairs.get("total"),
        retrieval_after={k: float(np.mean([r[k] for r in retrieval])) for k in retrieval[0]}
        if retrieval
        else {},
        seconds=seconds,
    )


def variant(config: ImproveConfig, entry: AblationEntry) -> Variant:
    """The ``Variant`` an ablation row trains: its methods and loss, the run's curation
    settings with the row's overrides."""
    return Variant(
        entry.name,
        entry.methods,
        entry.loss,
        override(config.curation, dict(entry.curation), "curation settings"),
    )


def run_ablation(
    config: ImproveConfig,
    out_dir: str | Path,
    grid: list[AblationEntry] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score every entry of ``grid`` on the splits x seeds of ``config``.

    Writes OUT/ablation.json, OUT/ablation.md and OUT/ablation.png, updated after each entry
    so that an interrupted ablation keeps what it measured.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = grid or ablation_grid()
    t0 = time.perf_counter()
    ws = Workspace(config, out_dir, progress)
    runner = Runner(ws)
    result = Ablation(
        model=config.model,
        target=config.target,
        root=config.root,
        n_clips=len(ws.items),
        n_classes=len(ws.class_names),
        splits=[s.to_dict() for s in ws.splits],
        seeds=ws.seeds,
        retrieval_before=ws.retrieval_before,
        config=config.to_dict(),
        train=ws.train_record(),
        items=[printable(i) for i in ws.items],
        class_names=list(ws.class_names),
    )
    n_trained = sum(1 for e in grid if e.loss is not None) * len(ws.splits) * len(ws.seeds)
    done = [0]
    # every student's class scores, for analyses of your own (scores.npz beside ablation.json)
    scores: dict[str, np.ndarray] = {"teacher": ws.scores_before}
    if ws.labels is not None:
        scores["labels"] = np.asarray(ws.labels)
    if ws.transfer_scores_before is not None:
        scores["transfer_teacher"] = ws.transfer_scores_before
        scores["transfer_labels"] = np.asarray(ws.transfer_labels)
    for entry in grid:
        t_entry = time.perf_counter()

        def log_run(t: Training, run: RunOutcome, entry: AblationEntry = entry) -> None:
            done[0] += 1
            log_progress(
                f"ablation {entry.name}: split {t.split.index} seed {t.seed} done "
                f"({done[0]}/{n_trained} trainings, {(time.perf_counter() - t0) / 60:.1f} min)",
                progress,
            )

        row_variant = variant(config, entry)
        runs = runner.runs(row_variant, on_run=log_run)
        summary, _ = summarize_runs(
            runs,
            ws.labels,
            ws.class_names,
            transfer_labels=ws.transfer_labels,
            transductive_method=config.transduction,
        )
        priors = summarize_priors(
            runs, ws.splits, ws.labels, ws.class_names, row_variant.curation.pseudo_refined_prior
        )
        row = _row(entry, summary, runs, time.perf_counter() - t_entry, priors)
        result.rows.append(row)
        if entry.loss is not None:
            _keep_scores(scores, len(result.rows) - 1, runs)
            np.savez_compressed(out_dir / "scores.npz", **scores)
        log_progress(
            f"{entry.name}: {100 * row.after.mean:.1f} ± {100 * row.after.std:.1f} % "
            f"(gain {100 * row.gain.mean:+.1f})",
            progress,
        )
        result.seconds = time.perf_counter() - t0
        result.picks = picks(result.rows)
        write_ablation(out_dir, result)
    return result


def _keep_scores(scores: dict[str, np.ndarray], row: int, runs: list[RunOutcome]) -> None:
    """Row ``row``'s students' scores, (runs, N, C) float32, in the order of ``runs`` (splits x
    seeds, as ablation.json's ``splits`` and ``seeds``)."""
    if all(r.scores_after is not None for r in runs):
        scores[f"row{row}"] = np.stack([r.scores_after for r in runs]).astype(np.float32)
    if all(r.transfer_scores_after is not None for r in runs):
        scores[f"row{row}_transfer"] = np.stack([r.transfer_scores_after for r in runs]).astype(
            np.float32
        )


def picks(rows: list[AblationRow]) -> dict[str, str | None]:
    """Which trained row a user would choose: by the label-free signal (computable without
    target labels), and by test-part accuracy (needs labels; what the table is scored on)."""
    trained = [r for r in rows if r.loss is not None]
    signal = [r for r in trained if r.label_free is not None]
    return {
        "label_free": max(signal, key=lambda r: r.label_free).name if signal else None,
        "labels": max(trained, key=lambda r: r.after.mean).name if trained else None,
        "signal": SIGNAL,
    }


def ablation_markdown(result: Ablation | dict[str, Any]) -> str:
    """ablation.md: the table of ``result`` (the typed record or ablation.json's content)."""
    if isinstance(result, Ablation):
        result = result.to_dict()
    n_runs = len(result["splits"]) * len(result["seeds"])
    strategy = result["splits"][0].get("strategy", "stratified") if result["splits"] else ""
    lines = [
        f"Model `{result['model']}` on `{result['target']}` ({result['n_clips']} clips, "
        f"{result['n_classes']} classes); {count(len(result['splits']), f'{strategy} split')} x "
        f"{count(len(result['seeds']), 'seed')} = {count(n_runs, 'run')} per row, test parts "
        "only. "
        "Accuracy in percent, mean ± std over runs; gain = after - before per run. "
        "CI = 95 % two-stage bootstrap (the splits resampled, and the test clips once for all "
        "splits, so a clip in several test parts counts once), the point estimate the pooled "
        "gain of the same estimator (outcomes of all runs together, where the gain column is "
        "the mean of the runs' gains); the clip bootstrap (splits held fixed) is kept in "
        "ablation.json. Pooled McNemar treats the runs' "
        "shared clips as independent outcomes and is not valid here: it is in the appendix "
        "below. Class-mean = "
        "the mean of per-class accuracies (every class counts the same). Prior TV = total "
        "variation distance of the class shares curation balanced to from the adaptation pool's "
        "true shares (scored only). Label-free = how often the students agree with the "
        "teacher's refined pseudo-labels on the adaptation clips (no target label read): "
        "the signal a user without labels can choose by.",
        "",
        "| configuration | pairs/run | accuracy | gain | pooled gain [95 % CI] | class-mean acc. "
        "| class-mean gain | pooled class-mean gain [95 % CI] | prior TV | label-free "
        "| held-out a2t R@1 | held-out t2a R@1 |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        pairs = "" if row["pairs"] is None else f"{row['pairs']['mean']:.0f}"
        r = row["retrieval_after"]
        bs = row.get("two_stage") or row["bootstrap"]
        cbs = row.get("class_mean_two_stage") or row.get("class_mean_bootstrap")
        cm = row.get("class_mean_after")
        cm_text = "" if cm is None else _spread(cm)
        cmg = row.get("class_mean_gain")
        cmg_text = "" if cmg is None or row["loss"] is None else _spread(cmg, sign=True)
        cg_text = "" if cbs is None else _ci(cbs)
        tv = row.get("prior_tv")
        lf = row.get("label_free")
        lines.append(
            f"| {row['name']} | {pairs} | {_spread(row['after'])} "
            f"| {_spread(row['gain'], sign=True)} "
            f"| {_ci(bs)} | {cm_text} | {cmg_text} | {cg_text} "
            f"| {'' if tv is None else f'{tv:.3f}'} | {_pct(lf)} "
            f"| {_pct(r.get('a2t_R@1'))} | {_pct(r.get('t2a_R@1'))} |"
        )
    pick = result.get("picks") or {}
    if pick.get("labels"):
        lines += [
            "",
            f"Label-free pick (highest {pick['signal']}): "
            f"**{pick.get('label_free') or 'none'}**; "
            f"pick by test-part accuracy (needs labels): **{pick['labels']}**.",
        ]
    lines += pipelines_markdown(result)
    lines += [
        "",
        "Appendix, not valid for this design (runs share test clips, so pooled outcomes are "
        "not independent): pooled McNemar exact p per row: "
        + ", ".join(
            f"{row['name']} {pvalue(row['mcnemar']['p_exact'])}"
            for row in result["rows"]
            if row.get("mcnemar")
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _spread(s: dict[str, float], sign: bool = False) -> str:
    """``mean ± std`` in points of a recorded ``Spread`` (``Spread.format``); records of
    earlier versions without a count are taken as several runs."""
    return Spread(**{"sem": 0.0, "min": 0.0, "max": 0.0, **s, "n": s.get("n") or 2}).format(
        sign=sign
    )


def _ci(bs: dict[str, float]) -> str:
    """A recorded ``BootstrapResult`` as ``report.format.ci`` writes it."""
    return ci(SimpleNamespace(**bs))


def pipelines_markdown(result: dict[str, Any]) -> list[str]:
    """Peers side by side: the teacher's training-free pipelines (the same in every row) and
    each trained row's student, plain and with transduction, on the same test parts."""
    trained = [r for r in result["rows"] if r["loss"] is not None and r.get("pipelines")]
    if not trained:
        return []
    transduction = (result.get("config") or {}).get("transduction", "claptune")
    heads = any("teacher + class head" in r["pipelines"] for r in trained)
    lines = [
        "",
        "Label-free pipelines side by side on the same test parts (clip accuracy / class-mean "
        "accuracy in percent, pooled over the runs' test outcomes; gains over the teacher's "
        "plain zero-shot ensemble in points from the same pooled estimator, two-stage 95 % CI). "
        "`teacher + X`: transductive inference X over all the target's clips taken together "
        "(pool and test part, no label read), no training, scored on the test part "
        "(`claptune` names the tool's own chain: label propagation over each clip's 3 nearest "
        "clips, then Sinkhorn balancing; no training); "
        + (HEAD_LEGEND + "; " if heads else "")
        + f"`+ transduction`: the student's scores refined the same way ({transduction}); "
        "`guarded`: what the label-free guard hands over, student or teacher + transduction.",
        "",
        "| pipeline | accuracy | class mean | gain [95 % CI] | class-mean gain [95 % CI] |",
        "|---|---:|---:|---|---|",
    ]

    def line(name: str, p: dict[str, Any]) -> str:
        return (
            f"| {name} | {100 * p['accuracy']:.1f} | {100 * p['class_mean_accuracy']:.1f} "
            f"| {_ci(p['gain'])} | {_ci(p['class_mean_gain'])} |"
        )

    for name, p in trained[0]["pipelines"].items():
        if not p["trained"]:
            lines.append(line(name, p))
    for row in trained:
        for name, p in row["pipelines"].items():
            if p["trained"]:
                lines.append(line(f"{row['name']}: {name}", p))
    guards = [(row["name"], row["guard"]) for row in trained if row.get("guard")]
    if guards:
        lines += [
            "",
            "The guard (scored afterwards): "
            + "; ".join(
                f"{name}: kept the student in {round(g['kept_student'] * g['runs'])} of "
                f"{count(int(g['runs']), 'run')}, right on {100 * g['right']:.0f} %"
                for name, g in guards
            )
            + ".",
        ]
    return lines


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def write_ablation(out_dir: Path, ablation: Ablation) -> None:
    from claptune.report.plots import ablation_plot

    result = ablation.to_dict()
    (out_dir / "ablation.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / "ablation.md").write_text(ablation_markdown(result))
    rows = [r for r in result["rows"] if r["loss"] is not None]
    base = next((r for r in result["rows"] if r["loss"] is None), None)
    if rows:
        (out_dir / "ablation.png").write_bytes(
            ablation_plot(
                [r["name"] for r in rows],
                [r["after"]["mean"] for r in rows],
                [r["after"]["std"] for r in rows],
                None if base is None else base["after"]["mean"],
            )
        )


__all__ = [
    "AblationEntry",
    "ablation_grid",
    "ablation_markdown",
    "run_ablation",
    "variant",
    "write_ablation",
]
