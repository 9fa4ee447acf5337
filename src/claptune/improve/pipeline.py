"""``improve``: zero-shot before, curation, fine-tuning, zero-shot after, over splits x seeds.

The flow of one invocation (``run_improve``):

1. ``Workspace`` (``claptune.improve.workspace``): load the teacher, the target task and the
   paired corpus; hold out part of the corpus for the forgetting check (never replayed, never
   curated); embed everything with the teacher once; score the teacher (before); draw the
   splits (by source recording or at random: never by label).
2. ``Runner`` (``claptune.improve.loop``): for each split, curate pairs with the chosen
   methods from the teacher's embeddings, the corpus and the split's *adaptation* part (its
   audio, never its labels); for each training seed, fine-tune a fresh student from the teacher
   on them with the corpus as replay and measure it (``Workspace.outcome``: all clips, the
   held-out corpus part's retrieval, the transfer clips, transduction and the guard's signals).
3. Summarise over runs (test parts only for the headline figures, two-stage intervals, the
   label-free pipelines side by side) and write the report.
4. The model worth saving (``train_final``): one student trained with the configuration on
   every clip but a held-out slice, kept by the label-free guard or replaced by the teacher,
   saved as ``RUN/model`` (``save_model``, which ``adapt`` shares).

Target labels are read only to score predictions (``runs.summarize_runs``); no choice inside a
run depends on them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.curation import write_pairs
from claptune.curation.settings import CurationSettings
from claptune.evaluate.metrics import accuracy
from claptune.evaluate.prototypes import head_summary
from claptune.improve.config import UNLABELED, ImproveConfig
from claptune.improve.curate import describe, pair_rows
from claptune.improve.loop import FinalModel, Runner, Training, Variant, train_final
from claptune.improve.runs import (
    RunOutcome,
    summarize_label_free,
    summarize_priors,
    summarize_retrieval,
    summarize_runs,
)
from claptune.improve.workspace import Workspace, log_progress
from claptune.report.schema import ModelInfo, ModelRun, Report, TargetInfo
from claptune.typed import changed_fields


@dataclass
class ImproveResult:
    report: Report  # what report.json holds
    out_dir: Path
    model_dir: Path | None  # the saved model (train_final), loadable by load_model


def run_improve(config: ImproveConfig, out_dir: str | Path, progress: bool = True) -> ImproveResult:
    """Run the whole method for ``config``; write report.json/md/html and RUN/model."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ws = Workspace(config, out_dir, progress)
    runner, variant = Runner(ws), Variant.of(ws)
    n_total = len(ws.splits) * len(ws.seeds)
    done: list[float] = [time.perf_counter()]

    def log_split(split, pairs) -> None:
        log_progress(
            f"split {split.index}: {len(split.adapt)} adaptation / {len(split.test)} test clips; "
            f"curated {describe(pairs)}",
            progress,
        )
        done[-1] = time.perf_counter()

    def log_run(t: Training, run: RunOutcome) -> None:
        test = t.split.test
        log_progress(
            f"run {len(done)}/{n_total} (split {t.split.index}, seed {t.seed}): test accuracy "
            f"{100 * accuracy(run.pred_before[test], ws.labels[test]):.1f} -> "
            f"{100 * accuracy(run.pred_after[test], ws.labels[test]):.1f} % in "
            f"{time.perf_counter() - done[-1]:.0f} s",
            progress,
        )
        done.append(time.perf_counter())

    # the report keeps predictions; every clip's class scores are for ablate alone
    runs = runner.runs(variant, on_run=log_run, keep_scores=False, on_split=log_split)
    final = train_final(ws, variant) if config.save_model else None
    model_dir = save_model(ws, final, out_dir) if final is not None else None
    student_dir = save_rejected_student(ws, final, out_dir) if final is not None else None
    report, confusions = build_report(ws, runs, time.perf_counter() - t0, model_dir)
    report.student_dir = None if student_dir is None else str(student_dir)
    if final is not None:
        report.model_run = ModelRun(
            split=0,
            seed=ws.seeds[0],
            saved=final.saved,
            n_clips=final.n_clips,
            n_pairs=final.n_pairs,
            guard=final.guard,
        )
    rep_pairs = runner.pairs(ws.splits[0], variant)
    rows = pair_rows(rep_pairs)
    from claptune.report.precision import pseudo_label_precision

    # scored now that every choice is made; nothing above read it
    report.pseudo_precision = pseudo_label_precision(
        rows, ws.items, ws.labels, ws.class_names, split=report.model_run.split
    )
    if model_dir is not None:
        write_improve_card(ws, report, model_dir)
    if student_dir is not None:
        write_improve_card(ws, report, student_dir, rejected_student=True)
    from claptune.report import ReportAssets, write_report
    from claptune.report.page import surest_rows

    adapt_clips = ws.splits[report.model_run.split].adapt  # the clips its pairs came from
    write_report(
        out_dir,
        report,
        ReportAssets(
            class_names=ws.class_names,
            confusion_before=confusions["before"],
            confusion_after=confusions["after"],
            pairs=rows,
            audio_per_class=config.audio_per_class,
            audio_samples=config.audio_samples,
            surest=surest_rows(
                ws.items, ws.scores_before, ws.class_names, config.audio_per_class, adapt_clips
            ),
        ),
    )
    if len(rep_pairs):
        write_pairs(rep_pairs, out_dir / "pairs_split0.csv")
    log_progress(
        f"before {100 * report.before.accuracy:.1f} % -> after "
        f"{100 * report.after.accuracy:.1f} % (test parts, {len(runs)} runs); "
        f"report: {out_dir / 'report.html'}",
        progress,
    )
    return ImproveResult(report, out_dir, model_dir)


def save_model(ws: Workspace, final: FinalModel, out_dir: Path) -> Path:
    """RUN/model: the model ``train_final`` chose, with the run's configuration beside it
    (``improve_config.json``, or ``adapt_config.json`` for a user's unlabeled clips) stripped
    of this machine's paths, since the folder may be published (``claptune push``)."""
    return _save_with_config(ws, final.model, out_dir / "model")


# settings that may name a folder or file of this machine
LOCAL_PATHS = ("audio", "root", "corpus", "cache_dir", "eval_root")


def _save_with_config(ws: Workspace, model, folder: Path) -> Path:
    """``model`` saved to ``folder`` with its class head (``claptune.evaluate.prototypes``) and
    the run's configuration beside it (``adapt_config.json`` or ``improve_config.json``) without
    this machine's paths, since the folder may be published:
    a setting naming a local file or folder is left out rather than cut to its last part, so
    that the file passed back with ``--config`` gets the defaults (or the flags given) instead
    of a path that exists nowhere; a Hub id stays."""
    from claptune.card import public_text

    saved = Path(model.save(folder))
    # its class head, fitted on every clip of the target with this model (no label read); the
    # teacher's embeddings of them are at hand
    emb = ws.target_emb if model is ws.teacher else ws.embed_audio(model, ws.items)
    head = ws.class_head(model, emb, np.arange(len(ws.items)))
    if head is not None:
        head.save(saved)
    name = "adapt_config.json" if ws.config.target == UNLABELED else "improve_config.json"
    record = {k: v for k, v in ws.config.record().items() if not _local_path(k, v)}
    (saved / name).write_text(json.dumps(public_text(record), indent=2))
    return saved


def _local_path(key: str, value) -> bool:
    """Whether setting ``key`` names a file or folder of this machine (a Hub id does not)."""
    if key not in LOCAL_PATHS or not value:
        return False
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(os.path.isabs(str(v)) or Path(str(v)).expanduser().exists() for v in values)


def save_rejected_student(ws: Workspace, final: FinalModel, out_dir: Path) -> Path | None:
    """RUN/student (``keep_student``): the student the guard did not keep, written beside the
    saved teacher with the run's configuration, for a user who classifies single clips without
    transduction, where the guard's comparison (student + transduction against teacher +
    transduction) does not apply. None when not asked for or when the student is RUN/model."""
    if not ws.config.keep_student or final.saved != "teacher":
        return None
    return _save_with_config(ws, final.student, out_dir / "student")


def curation_record(settings: CurationSettings) -> dict | None:
    """The curation settings that differ from the defaults (None when none does)."""
    return changed_fields(settings, CurationSettings()) or None


def write_improve_card(
    ws: Workspace, report: Report, model_dir: str | Path, rejected_student: bool = False
) -> Path:
    """The saved model's card: base model, target and corpus, curation and loss, what was
    saved (``train_final``; ``rejected_student``: the card of RUN/student, the student the
    guard did not keep) and the configuration's measured gain over the runs, with its
    two-stage interval."""
    from claptune.card import CardInfo, CardResult, base_of, write_model_card

    config, saved = ws.config, report.model_run
    # the corpus spec whole: a Hub id stays one, a local path is cut by the card itself
    datasets = [config.target] + ([config.corpus] if config.corpus else [])
    ts = report.paired_test.two_stage
    measured = (
        f"measured over {report.n_runs} runs ({len(report.splits)} splits x "
        f"{len(report.seeds)} seeds), test parts: {100 * report.before.accuracy:.1f} -> "
        f"{100 * report.after.accuracy:.1f} %"
        + (
            ""
            if ts is None
            else f", gain {100 * ts.difference:+.1f} points, two-stage 95 % CI "
            f"[{100 * ts.ci_low:+.1f}, {100 * ts.ci_high:+.1f}]"
        )
    )
    if rejected_student:
        what = (
            f"this model: the student trained on {saved.n_clips} of the {len(ws.items)} clips "
            "(no label read), which the label-free guard did not keep (it saved the teacher); "
            "written by --keep-student for classifying single clips"
        )
    elif saved.saved == "student":
        what = (
            f"this model: the student trained on {saved.n_clips} of the {len(ws.items)} clips "
            "(no label read), kept by the label-free guard"
        )
    else:
        what = (
            "this model is the teacher: the label-free guard found the student trained on "
            "all clips not clearly better than teacher + transduction"
        )
    return write_model_card(
        model_dir,
        CardInfo(
            made_by="claptune improve",
            base=base_of(ws.teacher),
            datasets=datasets,
            curation=list(config.methods),
            loss=config.loss,
            results=[
                CardResult(
                    dataset=config.target,
                    dataset_name=config.target,
                    before=report.before.accuracy,
                    after=report.after.accuracy,
                    note=f"{measured}; {what}",
                )
            ],
            details={
                "teacher": config.model,
                "curation settings": curation_record(config.curation),
                "training settings": report.train or None,
                "saved": "student (not kept by the guard)" if rejected_student else saved.saved,
                "guard": saved.guard or None,
                "class head": head_summary(model_dir),
            },
            model_name=(
                f"{config.model} for {config.target} (the teacher: the guard did not keep the "
                "student)"
                if saved.saved == "teacher" and not rejected_student
                else f"{config.model} improved on {config.target}"
                + (" (the student the guard did not keep)" if rejected_student else "")
            ),
        ),
    )


def build_report(
    ws: Workspace, runs: list[RunOutcome], seconds: float, model_dir: str | Path | None
) -> tuple[Report, dict]:
    """(report.json content, pooled test-part confusion matrices before/after)."""
    import claptune
    from claptune.improve.transfer import summarize_transfer

    summary, confusions = summarize_runs(
        runs,
        ws.labels,
        ws.class_names,
        transfer_labels=ws.transfer_labels,
        transductive_method=ws.config.transduction,
    )
    priors = summarize_priors(
        runs, ws.splits, ws.labels, ws.class_names, ws.config.curation.pseudo_refined_prior
    )
    transfer = None
    if ws.transfer_before is not None and all(r.transfer_after is not None for r in runs):
        transfer = summarize_transfer(
            ws.transfer_labels,
            ws.class_names,
            ws.transfer_before,
            [r.transfer_after for r in runs],
            ws.transfer_audio,
        )
    forgetting = None
    if ws.holdout_audio:
        forgetting = summarize_retrieval(
            ws.retrieval_before, runs, len(ws.holdout_audio), ws.holdout_source, ws.holdout_audio
        )
    report = Report.from_summary(
        summary,
        claptune_version=claptune.__version__,
        model=ModelInfo(
            spec=ws.config.model, backend=ws.teacher.backend, identity=ws.teacher.identity()
        ),
        target=TargetInfo(
            name=ws.config.target,
            root=ws.config.root,
            n_clips=len(ws.items),
            n_classes=len(ws.class_names),
            class_names=ws.class_names,
            items=ws.items,
        ),
        splits=[s.to_dict() for s in ws.splits],
        seeds=ws.seeds,
        templates=ws.templates,
        forgetting=forgetting,
        transfer=transfer,
        model_dir=None if model_dir is None else str(model_dir),
        model_run=ModelRun(split=0, seed=ws.seeds[0]),
        train=ws.train_record(),
        failed_clips=[{"item": i, "reason": r} for i, r in ws.failed],
        timing_s={"setup": ws.setup_seconds, "total": seconds},
        config=ws.config.to_dict(),
        priors=priors,
        label_free=summarize_label_free(summary.runs),
    )
    return report, confusions


__all__ = [
    "ImproveResult",
    "build_report",
    "curation_record",
    "run_improve",
    "save_model",
    "save_rejected_student",
    "write_improve_card",
]
