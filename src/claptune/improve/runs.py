"""Turn the runs of an ``improve`` (splits x seeds) into the figures of report.json.

Every figure is a mean over runs with its spread; the paired tests pool the test-part outcomes
of all runs: McNemar on the pooled discordant counts, and a bootstrap that resamples clips
(a clip scored in several runs is one unit), so overlapping test parts are not double-counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from claptune.curation.priors import total_variation
from claptune.evaluate.label_free import guard_keeps
from claptune.evaluate.metrics import (
    accuracy,
    class_mean_accuracy,
    confusion_matrix,
    per_class_accuracy,
)
from claptune.report.schema import (
    ClassPriors,
    CurationCounts,
    Forgetting,
    Gain,
    PairedTest,
    PipelineRow,
    RunRecord,
    RunsSummary,
    Side,
    SplitPrior,
    Transductive,
)
from claptune.stats import (
    class_mean_bootstrap,
    mcnemar,
    mean_spread,
    paired_bootstrap,
    two_stage_bootstrap,
)


@dataclass
class RunOutcome:
    """What one (split, seed) run measured. Predictions cover all clips of the target."""

    split: int
    seed: int
    test: np.ndarray  # clip indices of this split's test part
    pred_before: np.ndarray  # (N,) teacher predictions on all clips
    pred_after: np.ndarray  # (N,) student predictions on all clips (with its class head)
    n_pairs: dict[str, int] = field(default_factory=dict)  # curated pairs per method (+ "total")
    pairs_per_class: dict[str, int] = field(default_factory=dict)
    retrieval_after: dict[str, float] = field(default_factory=dict)
    transfer_after: np.ndarray | None = None  # predictions on the transfer-check clips
    train: dict = field(default_factory=dict)  # what fit reported (steps, final loss, ...)
    class_shares: dict[str, float] | None = None  # what curation balanced the pool to
    scores_after: np.ndarray | None = None  # (N, C) student cosines with the class embeddings
    transfer_scores_after: np.ndarray | None = None  # (T, C) on the transfer-check clips
    # agreement with the teacher's refined pseudo-labels (Workspace.agreement): no label read
    agreement: dict[str, float] = field(default_factory=dict)
    # (N,) transductive classes of teacher and student (transduction over every clip of the
    # target taken together) on the guard clips (the test part on a labelled target), -1
    # elsewhere; the guard's signals and decision
    trans_before: np.ndarray | None = None
    trans_after: np.ndarray | None = None
    guard: dict[str, float | int | bool] = field(default_factory=dict)
    # (N,) the teacher's classes by every label-free transduction over every clip of the
    # target, on the guard clips (-1 elsewhere): the peers
    peers: dict[str, np.ndarray] = field(default_factory=dict)
    # (N,) the student's predictions without its class head (None: no head was fitted)
    pred_after_plain: np.ndarray | None = None


def _accuracy(pred: np.ndarray, labels: np.ndarray, idx: np.ndarray | None = None) -> float:
    return accuracy(pred, labels) if idx is None else accuracy(pred[idx], labels[idx])


def _class_mean(pred: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> float:
    return class_mean_accuracy(pred[idx], labels[idx])


def _per_class(pred, labels, idx, n_classes) -> np.ndarray:
    """(C,) accuracy per class on idx; NaN for a class absent from idx."""
    return per_class_accuracy(pred[idx], labels[idx], n_classes)


def _confusion(pred, labels, idx, n_classes) -> np.ndarray:
    return confusion_matrix(pred[idx], labels[idx], n_classes)


def summarize_runs(
    runs: Sequence[RunOutcome],
    labels: np.ndarray,
    class_names: Sequence[str],
    bootstrap_resamples: int = 10_000,
    bootstrap_seed: int = 0,
    transfer_labels: np.ndarray | None = None,
    transductive_method: str = "claptune",
) -> tuple[RunsSummary, dict[str, np.ndarray]]:
    """(the report's figures over runs, pooled confusion matrices before/after on test parts).

    ``transfer_labels``: the classes of the transfer-check clips (named by their captions, not
    by a target label), for the label-free selection signal of each run."""
    if not runs:
        raise ValueError("no runs to summarize")
    labels = np.asarray(labels)
    n_classes = len(class_names)
    side: dict[str, Side] = {}
    confusions: dict[str, np.ndarray] = {}
    for name in ("before", "after"):
        preds = [r.pred_before if name == "before" else r.pred_after for r in runs]
        test_acc = [_accuracy(p, labels, r.test) for p, r in zip(preds, runs, strict=True)]
        all_acc = [_accuracy(p, labels) for p in preds]
        per_class = np.array(
            [_per_class(p, labels, r.test, n_classes) for p, r in zip(preds, runs, strict=True)]
        )
        # a class absent from every test part has no accuracy (NaN, reported as None)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pc_mean = np.nanmean(per_class, axis=0)
            pc_std = np.nanstd(per_class, axis=0, ddof=1) if len(runs) > 1 else np.zeros(n_classes)
        test_spread, all_spread = mean_spread(test_acc), mean_spread(all_acc)
        cm_spread = mean_spread(
            [_class_mean(p, labels, r.test) for p, r in zip(preds, runs, strict=True)]
        )
        side[name] = Side(
            accuracy=test_spread.mean,
            accuracy_spread=test_spread,
            accuracy_all=all_spread.mean,
            accuracy_all_spread=all_spread,
            per_class={c: _finite(v) for c, v in zip(class_names, pc_mean, strict=True)},
            per_class_std={c: _finite(v) for c, v in zip(class_names, pc_std, strict=True)},
            class_mean_accuracy=cm_spread.mean,
            class_mean_accuracy_spread=cm_spread,
        )
        confusions[name] = sum(
            _confusion(p, labels, r.test, n_classes) for p, r in zip(preds, runs, strict=True)
        )

    gains = [
        _accuracy(r.pred_after, labels, r.test) - _accuracy(r.pred_before, labels, r.test)
        for r in runs
    ]
    gains_all = [_accuracy(r.pred_after, labels) - _accuracy(r.pred_before, labels) for r in runs]
    gain_spread, gain_all_spread = mean_spread(gains), mean_spread(gains_all)
    cm_gain = mean_spread(
        [
            _class_mean(r.pred_after, labels, r.test) - _class_mean(r.pred_before, labels, r.test)
            for r in runs
        ]
    )

    before_ok = np.concatenate([r.pred_before[r.test] == labels[r.test] for r in runs])
    after_ok = np.concatenate([r.pred_after[r.test] == labels[r.test] for r in runs])
    clip_ids = np.concatenate([r.test for r in runs])
    split_ids = np.concatenate([np.full(len(r.test), r.split) for r in runs])
    two_stage = two_stage_bootstrap(
        before_ok,
        after_ok,
        split_ids,
        clip_ids,
        n_resamples=TWO_STAGE_RESAMPLES,
        seed=bootstrap_seed,
    )
    class_mean_two_stage = two_stage_bootstrap(
        before_ok,
        after_ok,
        split_ids,
        clip_ids,
        labels=labels[clip_ids],
        n_resamples=TWO_STAGE_RESAMPLES,
        seed=bootstrap_seed,
    )
    paired = PairedTest(
        two_stage=two_stage,
        class_mean_two_stage=class_mean_two_stage,
        mcnemar=mcnemar(before_ok, after_ok),
        bootstrap=paired_bootstrap(
            before_ok,
            after_ok,
            groups=clip_ids,
            n_resamples=bootstrap_resamples,
            seed=bootstrap_seed,
        ),
        class_mean_bootstrap=class_mean_bootstrap(
            before_ok,
            after_ok,
            labels[clip_ids],
            clip_ids,
            n_resamples=bootstrap_resamples,
            seed=bootstrap_seed,
        ),
        note="test-part outcomes of all runs pooled; the two-stage bootstraps (splits and clips "
        "resampled, a clip shared by splits drawn once) lead; the clip bootstraps hold the "
        "splits fixed; pooled "
        "McNemar treats the runs' shared clips as independent outcomes and is not valid here",
    )

    methods = sorted({m for r in runs for m in r.n_pairs})
    curation = CurationCounts(
        pairs={m: mean_spread([r.n_pairs.get(m, 0) for r in runs]) for m in methods},
        per_class={
            c: float(np.mean([r.pairs_per_class.get(c, 0) for r in runs])) for c in class_names
        },
    )
    summary = RunsSummary(
        n_runs=len(runs),
        before=side["before"],
        after=side["after"],
        gain=Gain(
            accuracy=gain_spread.mean,
            accuracy_spread=gain_spread,
            accuracy_all=gain_all_spread.mean,
            accuracy_all_spread=gain_all_spread,
            class_mean_accuracy=cm_gain.mean,
            class_mean_accuracy_spread=cm_gain,
        ),
        paired_test=paired,
        curation=curation,
        runs=[
            RunRecord(
                split=r.split,
                seed=r.seed,
                before_accuracy=_accuracy(r.pred_before, labels, r.test),
                after_accuracy=_accuracy(r.pred_after, labels, r.test),
                before_accuracy_all=_accuracy(r.pred_before, labels),
                after_accuracy_all=_accuracy(r.pred_after, labels),
                n_pairs=r.n_pairs.get("total", sum(r.n_pairs.values())),
                mcnemar=mcnemar(
                    r.pred_before[r.test] == labels[r.test], r.pred_after[r.test] == labels[r.test]
                ),
                retrieval_after=r.retrieval_after,
                train=r.train,
                before_class_mean_accuracy=_class_mean(r.pred_before, labels, r.test),
                after_class_mean_accuracy=_class_mean(r.pred_after, labels, r.test),
                label_free=label_free_signals(r, transfer_labels),
                transductive=run_pipelines(r, labels),
                guard=dict(r.guard),
            )
            for r in runs
        ],
        transductive=summarize_pipelines(runs, labels, transductive_method, bootstrap_seed),
    )
    return summary, confusions


TWO_STAGE_RESAMPLES = 2000  # the two-stage bootstrap loops in Python: 2,000 keeps it ~1 s


def _pipeline_preds(run: RunOutcome) -> dict[str, tuple[np.ndarray, bool]]:
    """Every label-free pipeline's (N,) classes in one run, and whether it uses the student:
    the teacher's plain and transductive peers, the student plain and with transduction, and
    what the guard hands a user (student + transduction if kept, else teacher + transduction)."""
    out: dict[str, tuple[np.ndarray, bool]] = {"teacher": (run.pred_before, False)}
    for name, pred in run.peers.items():
        if name != "none":
            out[f"teacher + {name}"] = (pred, False)
    if run.pred_after_plain is not None:
        out["student, no class head"] = (run.pred_after_plain, True)
    out["student"] = (run.pred_after, True)
    if run.trans_after is not None and (run.trans_after >= 0).any():
        out["student + transduction"] = (run.trans_after, True)
        if "keep_student" in run.guard:
            kept = guard_keeps(run.guard)
            out["guarded"] = (run.trans_after if kept else run.trans_before, True)
    return out


def run_pipelines(run: RunOutcome, labels: np.ndarray) -> dict[str, float]:
    """Test-part accuracy of each pipeline of ``run`` (scored only)."""
    if not len(run.test):
        return {}
    return {
        name: _accuracy(pred, labels, run.test) for name, (pred, _) in _pipeline_preds(run).items()
    }


def summarize_pipelines(
    runs: Sequence[RunOutcome], labels: np.ndarray, method: str, seed: int = 0
) -> Transductive | None:
    """Every pipeline against the teacher's plain zero-shot on the test parts of all runs, with
    two-stage intervals; the guard's keep rate and (scored) how often its decision was right."""
    if not runs or not all(len(r.test) for r in runs):
        return None
    per_run = [_pipeline_preds(r) for r in runs]
    names = [n for n in per_run[0] if all(n in p for p in per_run)]
    clip_ids = np.concatenate([r.test for r in runs])
    split_ids = np.concatenate([np.full(len(r.test), r.split) for r in runs])
    base = np.concatenate([r.pred_before[r.test] == labels[r.test] for r in runs])
    rows = {}
    for name in names:
        pred = np.concatenate([p[name][0][r.test] for p, r in zip(per_run, runs, strict=True)])
        ok = pred == labels[clip_ids]
        # pooled over the runs' test parts: the estimator of the gains' point estimates, so that
        # a pipeline's figure minus the teacher's is its gain
        rows[name] = PipelineRow(
            accuracy=float(ok.mean()),
            class_mean_accuracy=class_mean_accuracy(pred, labels[clip_ids]),
            gain=two_stage_bootstrap(
                base, ok, split_ids, clip_ids, n_resamples=TWO_STAGE_RESAMPLES, seed=seed
            ),
            class_mean_gain=two_stage_bootstrap(
                base,
                ok,
                split_ids,
                clip_ids,
                labels=labels[clip_ids],
                n_resamples=TWO_STAGE_RESAMPLES,
                seed=seed,
            ),
            trained=per_run[0][name][1],
        )
    guard: dict[str, float | int] = {}
    decided = [r for r in runs if "keep_student" in r.guard]
    if decided:
        kept = np.array([guard_keeps(r.guard) for r in decided])
        better = np.array(
            [
                _accuracy(r.trans_after, labels, r.test) > _accuracy(r.trans_before, labels, r.test)
                for r in decided
            ]
        )
        guard = {
            "runs": len(decided),
            "kept_student": float(kept.mean()),
            "right": float(np.mean(kept == better)),
            "kept_a_worse_student": int(np.sum(kept & ~better)),
            "rejected_a_better_student": int(np.sum(~kept & better)),
        }
    return Transductive(method=method, rows=rows, guard=guard)


def label_free_signals(run: RunOutcome, transfer_labels: np.ndarray | None) -> dict[str, float]:
    """Signals a user without target labels can compute for a trained student, to choose between
    configurations:

    - ``pseudo_agreement``: how often the student's class agrees with the teacher's refined
      pseudo-label (``Workspace.reference_labels``) on the adaptation clips;
    - ``pseudo_agreement_held_out``: the same on clips no curation saw (the test part's audio,
      its labels unread; a user would hold out some unlabeled clips);
    - ``transfer_class_mean``: the student's class-mean accuracy on the held-out corpus clips
      whose caption names exactly one target class (labels from captions the user already
      has; other recordings of the same classes).
    """
    out = dict(run.agreement)
    if run.transfer_after is not None and transfer_labels is not None and len(transfer_labels):
        out["transfer_class_mean"] = class_mean_accuracy(run.transfer_after, transfer_labels)
    return out


def summarize_label_free(runs_records) -> dict:
    """Mean and spread over runs of each label-free signal the runs recorded."""
    keys = sorted({k for r in runs_records for k in r.label_free})
    return {
        k: mean_spread([r.label_free[k] for r in runs_records if k in r.label_free]) for k in keys
    }


def summarize_priors(
    runs: Sequence[RunOutcome],
    splits,
    labels: np.ndarray | None,
    class_names: Sequence[str],
    method: str,
) -> ClassPriors | None:
    """The class shares each split's curation balanced to, scored against the adaptation
    pool's true shares where labels exist (after the run; the estimate never read them)."""
    per_split: dict[int, SplitPrior] = {}
    for r in runs:
        if r.class_shares is None or r.split in per_split:
            continue
        est = np.array([r.class_shares.get(c, 0.0) for c in class_names])
        prior = SplitPrior(split=r.split, estimated=dict(r.class_shares))
        split = next(s for s in splits if s.index == r.split)
        if labels is not None and len(split.adapt):
            true = np.bincount(np.asarray(labels)[split.adapt], minlength=len(class_names))
            true = true / true.sum()
            prior.true = {c: float(v) for c, v in zip(class_names, true, strict=True)}
            prior.tv = total_variation(est, true)
            prior.tv_uniform = total_variation(np.ones(len(class_names)), true)
        per_split[r.split] = prior
    if not per_split:
        return None
    scored = [p for p in per_split.values() if p.tv is not None]
    return ClassPriors(
        method=method,
        splits=[per_split[k] for k in sorted(per_split)],
        tv=mean_spread([p.tv for p in scored]) if scored else None,
        tv_uniform=mean_spread([p.tv_uniform for p in scored]) if scored else None,
    )


def summarize_retrieval(
    before: dict[str, float],
    runs: Sequence[RunOutcome],
    n_pairs: int,
    held_out_source: str = "",
    held_out_audio: Sequence[str] = (),
) -> Forgetting:
    """Held-out retrieval before (teacher, one number) and after (mean ± spread over runs)."""
    after = {k: mean_spread([r.retrieval_after[k] for r in runs]) for k in before}
    change = {k: after[k].mean - before[k] for k in before}
    return Forgetting(
        n_pairs=n_pairs,
        before=dict(before),
        after=after,
        change=change,
        held_out_source=held_out_source,
        held_out_audio=list(held_out_audio),
    )


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
