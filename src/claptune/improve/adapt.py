"""``adapt``: the method on a user's own unlabeled clips, with a report that needs no label.

    run_adapt(ImproveConfig.unlabeled(("recordings/",), ("dog", "rain")), "runs/mine")

``improve`` on an unlabeled target: the clips and class names become the ``Workspace``'s target
(``claptune.improve.workspace``), with no measured split since nothing can be scored; the model
worth saving is ``improve``'s (``claptune.improve.loop.train_final``: one student on every clip
but the guard's held-out slice, kept by the label-free guard or replaced by the teacher), saved
the same way (``claptune.improve.pipeline.save_model``). What adapt adds: ``predictions.csv``
(every clip's class, from the teacher's or the saved model's scores refined transductively)
and its own report sections.

What the report measures without labels: the class shares curation balanced the pool to, the
teacher's refined pseudo-labels per class with their confidence and margin, and how often the
student still predicts the teacher's class. ``eval_target``/``eval_root`` name a labelled set
that is scored before and after and read for nothing else.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.errors import ClaptuneError
from claptune.evaluate.prototypes import head_summary
from claptune.improve.config import UNLABELED, ImproveConfig
from claptune.improve.curate import pair_rows
from claptune.improve.loop import train_final
from claptune.improve.pipeline import curation_record, save_model, save_rejected_student
from claptune.improve.workspace import Workspace, log_progress
from claptune.report.schema import (
    AdaptReport,
    Agreement,
    ClassRow,
    EvalScores,
    Histogram,
    LabelledEval,
)

logger = logging.getLogger(__name__)
HISTOGRAM_BINS = 20  # over [0, 1]: confidence and margin of refined probabilities


@dataclass
class AdaptResult:
    report: AdaptReport
    out_dir: Path
    model_dir: Path | None


def unlabeled_clips(config: ImproveConfig):
    """The ``UnlabeledClips`` of an unlabeled ``config``: its audio paths expanded
    (``find_audio``)."""
    from claptune.audio import find_audio
    from claptune.data import UnlabeledClips

    items = find_audio(config.audio)
    if len(items) < 2:
        raise ClaptuneError(
            f"adapt needs at least 2 clips; found {len(items)} in {', '.join(config.audio)}"
        )
    return UnlabeledClips("unlabeled audio", items, list(config.class_names))


def run_adapt(config: ImproveConfig, out_dir: str | Path, progress: bool = True) -> AdaptResult:
    """Curate, fine-tune one student, keep it or the teacher (the guard), and write
    predictions.csv, RUN/model and report.json/md/html."""
    from claptune.curation import write_pairs

    if config.target != UNLABELED:
        raise ClaptuneError(
            "adapt runs on a user's unlabeled clips: ImproveConfig.unlabeled(audio, class_names)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    eval_set = labelled_set(config)  # a wrong --eval fails here, not after training
    ws = Workspace(config, out_dir, progress, target=unlabeled_clips(config))
    final = train_final(ws)
    run, pairs = final.run, final.pairs
    # the labels come from the pipeline that measured best on fresh skewed targets
    # (bench/results/adapt_labels.md): the teacher with transduction over all clips, unless
    # the user asks for the saved model's scores
    labeller = ws.teacher if config.labels_from == "teacher" else final.model
    probs = (
        ws.teacher_transduced()
        if labeller is ws.teacher
        else ws.transduced(labeller, ws.embed_audio(labeller, ws.items))
    )
    from claptune.evaluate.transductive import write_predictions

    write_predictions(out_dir / "predictions.csv", ws.items, probs, ws.class_names)
    counts = np.bincount(probs.argmax(axis=1), minlength=len(ws.class_names))
    predictions = {
        "file": "predictions.csv",
        "n_clips": len(ws.items),
        "transduction": ws.config.transduction,
        "model": "teacher" if labeller is ws.teacher else "student",
        "counts": dict(zip(ws.class_names, counts.tolist(), strict=True)),
    }
    model_dir = save_model(ws, final, out_dir) if config.save_model else None
    student_dir = save_rejected_student(ws, final, out_dir) if config.save_model else None
    evaluation = None if eval_set is None else score_labelled(ws, final.student, eval_set)
    report = build_adapt_report(ws, config, final, evaluation, model_dir, time.perf_counter() - t0)
    report.guard = dict(run.guard)
    report.saved = final.saved
    report.student_dir = None if student_dir is None else str(student_dir)
    report.predictions = predictions
    for name, n in predictions["counts"].items():
        report.classes[name].labelled = n
    if model_dir is not None:
        write_adapt_card(ws, report, model_dir)
    if student_dir is not None:
        write_adapt_card(ws, report, student_dir, rejected_student=True)
    from claptune.report.adapt import AdaptAssets, write_adapt_report
    from claptune.report.page import surest_rows

    write_adapt_report(
        out_dir,
        report,
        AdaptAssets(
            pairs=pair_rows(pairs),
            audio_per_class=config.audio_per_class,
            surest=surest_rows(ws.items, ws.scores_before, ws.class_names, config.audio_per_class),
        ),
    )
    if len(pairs):
        write_pairs(pairs, out_dir / "pairs.csv")
    log_progress(
        f"labels: {out_dir / 'predictions.csv'}; report: {out_dir / 'report.html'}", progress
    )
    return AdaptResult(report, out_dir, model_dir)


def teacher_pseudo_labels(
    ws: Workspace, clips: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class, confidence, margin) of the teacher's refined pseudo-label of each clip at
    ``clips``: ``claptune.curation.pseudo.refined_scores`` with the run's curation settings
    and the classifier curation scores with, so that these are the labels curation chose from."""
    from claptune.curation.pseudo import refined_scores

    s = ws.config.curation
    return refined_scores(
        ws.target_emb[clips],
        ws.classifier(ws.teacher),
        float(ws.teacher.logit_scale.detach()),
        s.pseudo_refined_mode,
        s.pseudo_refined_knn,
        s.pseudo_refined_knn_weight,
        s.pseudo_refined_prior,
        s.pseudo_refined_prior_strength,
    )


def histogram(values: np.ndarray, curated: np.ndarray, threshold: float | None) -> Histogram:
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    clipped = np.clip(values, 0.0, 1.0)  # a refined probability may round past 1
    return Histogram(
        edges=edges.tolist(),
        counts=np.histogram(clipped, edges)[0].tolist(),
        counts_curated=np.histogram(clipped[curated], edges)[0].tolist(),
        threshold=threshold,
    )


def _share(mask: np.ndarray, same: np.ndarray) -> float | None:
    return float(same[mask].mean()) if mask.any() else None


def build_adapt_report(
    ws: Workspace,
    config: ImproveConfig,
    final,
    evaluation,
    model_dir: Path | None,
    seconds: float,
) -> AdaptReport:
    """The label-free report of one adapt run (``final``: ``train_final``'s student, its
    split, pairs and ``RunOutcome``)."""
    import claptune
    from claptune.improve.runs import label_free_signals, summarize_priors, summarize_retrieval
    from claptune.improve.transfer import summarize_transfer
    from claptune.report.schema import ModelInfo, TargetInfo

    names = ws.class_names
    run, pairs = final.run, final.pairs
    method = ws.config.methods[0] if ws.config.methods else None
    meta = pairs.meta.get(method, {}) if method else {}
    clips = final.split.adapt
    pseudo, conf, margin = teacher_pseudo_labels(ws, clips)
    curated_items = {a for a, m in zip(pairs.audio, pairs.method, strict=True) if m == method}
    curated = np.array([ws.items[i] in curated_items for i in clips], dtype=bool)
    criterion = meta.get("criterion", "confidence")
    cut = meta.get("threshold_value")

    before, after = run.pred_before[clips], run.pred_after[clips]
    same = before == after
    priors = summarize_priors([run], [final.split], None, names, meta.get("prior") or "uniform")
    shares = priors.splits[0].estimated if priors else {}
    counts = pairs.class_counts()
    classes = {
        c: ClassRow(
            share=shares.get(c),
            pseudo_labels=int((pseudo == k).sum()),
            curated=int(counts.get(c, 0)),
            teacher=int((before == k).sum()),
            student=int((after == k).sum()),
            unchanged=_share(before == k, same),
        )
        for k, c in enumerate(names)
    }
    transfer = None
    if ws.transfer_before is not None and run.transfer_after is not None:
        transfer = summarize_transfer(
            ws.transfer_labels, names, ws.transfer_before, [run.transfer_after], ws.transfer_audio
        )
    forgetting = None
    if ws.holdout_audio:
        forgetting = summarize_retrieval(
            ws.retrieval_before, [run], len(ws.holdout_audio), ws.holdout_source, ws.holdout_audio
        )
    return AdaptReport(
        claptune_version=claptune.__version__,
        model=ModelInfo(
            spec=config.model, backend=ws.teacher.backend, identity=ws.teacher.identity()
        ),
        target=TargetInfo(
            name=ws.dataset.name,
            n_clips=len(ws.items),
            n_classes=len(names),
            class_names=names,
            items=ws.items,
        ),
        seed=run.seed,
        methods=list(ws.config.methods),
        loss=ws.config.loss,
        templates=ws.templates,
        n_pairs=run.n_pairs,
        priors=priors,
        criterion=criterion,
        confidence=histogram(conf, curated, cut if criterion == "confidence" else None),
        margin=histogram(margin, curated, cut if criterion == "margin" else None),
        classes=classes,
        agreement=Agreement(
            share=float(same.mean()),
            n_clips=int(same.size),
            curated=_share(curated, same),
            not_curated=_share(~curated, same),
        ),
        forgetting=forgetting,
        transfer=transfer,
        label_free=label_free_signals(run, ws.transfer_labels),
        evaluation=evaluation,
        model_dir=None if model_dir is None else str(model_dir),
        train=ws.train_record(),
        train_result=run.train,
        failed_clips=[{"item": i, "reason": r} for i, r in ws.failed],
        timing_s={"setup": ws.setup_seconds, "total": seconds},
        config=config.record(),
    )


def _word_key(name: str) -> str:
    from claptune.evaluate.zeroshot import clean_class_name

    return clean_class_name(name).lower()


def labelled_set(config: ImproveConfig):
    """The ``--eval`` data set, checked before anything is trained or written: it loads, and
    its classes are among the run's class names (matched by their words: ``dog_bark`` is
    ``dog bark``). None without ``--eval``."""
    if not config.eval_target:
        return None
    from claptune.data import load_dataset

    dataset = load_dataset(config.eval_target, root=config.eval_root)
    ours = {_word_key(c) for c in config.class_names}
    missing = [c for c in dataset.class_names if _word_key(c) not in ours]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", ... ({len(missing)} in all)" if len(missing) > 5 else ""
        )
        raise ClaptuneError(
            f"--eval {config.eval_target}: classes not among the run's class names: {shown}"
        )
    return dataset


def score_labelled(ws: Workspace, student, dataset) -> LabelledEval:
    """Zero-shot accuracy and class-mean accuracy of teacher and student on a labelled set
    (``labelled_set``), classifying among the run's class names. Scored only: nothing of the
    run reads it."""
    from claptune.evaluate.metrics import accuracy, class_mean_accuracy, per_class_accuracy
    from claptune.stats import class_mean_bootstrap, paired_bootstrap

    target = ws.config.eval_target
    ours = {_word_key(c): k for k, c in enumerate(ws.class_names)}
    failed_before = len(ws.failed)
    items = [str(p) for p in dataset.items]
    kept = ws.add_clips(items, f"{target} audio (scored only)")
    failed = [{"item": i, "reason": r} for i, r in ws.failed[failed_before:]]
    del ws.failed[failed_before:]  # the eval set's failures are listed with the eval
    items = [items[i] for i in kept]
    to_ours = np.array([ours[_word_key(c)] for c in dataset.class_names])
    labels = to_ours[np.asarray(dataset.labels)[kept]]
    preds = {
        name: ws.predictions(model, ws.embed_audio(model, items))
        for name, model in (("before", ws.teacher), ("after", student))
    }
    ok = {name: p == labels for name, p in preds.items()}
    clip_ids = np.arange(len(items))

    def per_class(p: np.ndarray) -> dict[str, float]:
        recall = per_class_accuracy(p, labels, len(ws.class_names))
        return {ws.class_names[c]: float(recall[c]) for c in np.unique(labels)}

    adapted = {str(Path(i).resolve()) for i in ws.items}
    return LabelledEval(
        target=target,
        root=ws.config.eval_root,
        n_clips=len(items),
        n_classes=len(np.unique(labels)),
        overlap=sum(str(Path(i).resolve()) in adapted for i in items),
        before=EvalScores(
            accuracy(preds["before"], labels), class_mean_accuracy(preds["before"], labels)
        ),
        after=EvalScores(
            accuracy(preds["after"], labels), class_mean_accuracy(preds["after"], labels)
        ),
        bootstrap=paired_bootstrap(ok["before"], ok["after"], groups=clip_ids),
        class_mean_bootstrap=class_mean_bootstrap(ok["before"], ok["after"], labels, clip_ids),
        per_class_before=per_class(preds["before"]),
        per_class_after=per_class(preds["after"]),
        failed_clips=failed,
    )


def write_adapt_card(
    ws: Workspace, report: AdaptReport, model_dir: str | Path, rejected_student: bool = False
) -> Path:
    """The adapted model's card: base model, corpus, curation and loss, the label-free figures,
    which model it is (the student, or the teacher the guard kept; ``rejected_student``: the
    student the guard did not keep, RUN/student) and, where a labelled set was scored, the
    teacher's and the student's accuracy there."""
    from claptune.card import CardInfo, CardResult, base_of, write_model_card

    ev = report.evaluation
    results = []
    if ev is not None:
        results.append(
            CardResult(
                dataset=ev.target,
                dataset_name=ev.target,
                before=ev.before.accuracy,
                after=ev.after.accuracy,
                split="all",
                note=f"{ev.n_clips} clips scored only; {ev.overlap} of them were adaptation clips "
                "(used without labels); before: the teacher, after: the adapted student",
            )
        )
    corpus = ws.config.corpus
    name = f"{report.model.spec} adapted to {report.target.n_classes} classes"
    if rejected_student:
        which = "the adapted student the label-free guard did not keep"
        name += " (the student the guard did not keep)"
    elif report.saved == "teacher":
        which = "the teacher: the label-free guard did not keep the adapted student"
        name = (
            f"{report.model.spec} for {report.target.n_classes} classes "
            "(the teacher: the guard did not keep the student)"
        )
    else:
        which = "the adapted student, kept by the label-free guard"
    return write_model_card(
        model_dir,
        CardInfo(
            made_by="claptune adapt",
            base=base_of(ws.teacher),
            datasets=[Path(corpus).name] if corpus else [],
            curation=list(report.methods),
            loss=report.loss,
            results=results,
            details={
                "teacher": report.model.spec,
                "unlabeled clips": report.target.n_clips,
                "classes": report.target.n_classes,
                "curated pairs": report.n_pairs,
                "class prior": report.priors.method if report.priors else None,
                "teacher/student agreement": round(report.agreement.share, 4),
                "curation settings": curation_record(ws.config.curation),
                "training settings": report.train or None,
                "this model": which,
                "class head": head_summary(model_dir),
            },
            model_name=name,
        ),
    )


__all__ = [
    "AdaptResult",
    "build_adapt_report",
    "run_adapt",
    "score_labelled",
    "teacher_pseudo_labels",
    "unlabeled_clips",
    "write_adapt_card",
]
