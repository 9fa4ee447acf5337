"""The one split x seed loop, and the model worth saving.

``improve``, ``ablate``, ``adapt`` and the benchmarks all train through here:

- ``Variant``: one configuration (curation methods, their settings, a loss; or the teacher
  untouched). ``improve`` runs one, ``ablate`` a grid, the benchmarks whatever they compare.
- ``Runner``: for a ``Workspace`` (``claptune.improve.workspace``), the pairs of each split and
  variant curated once (shared by every seed and every variant with the same curation), then
  one fresh student per (split, seed) (``trainings``), measured by ``Workspace.outcome``
  (``runs``). A labelled target has ``n_splits`` measured splits; a user's unlabeled clips have
  none, since nothing can be scored.
- ``train_final``: after the measured splits (or without any), one student trained with the
  configuration on every clip but the guard's held-out slice, kept by the label-free guard or
  replaced by the teacher: what ``improve`` and ``adapt`` save.

Nothing here reads a target label.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from claptune.curation import CurationSettings, Pairs
from claptune.evaluate.label_free import guard_keeps
from claptune.improve.curate import describe
from claptune.improve.runs import RunOutcome
from claptune.improve.splits import Split, whole_pool_split
from claptune.improve.workspace import Workspace, log_progress
from claptune.report.format import undecided_reason

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """One configuration to train on every split x seed."""

    name: str
    methods: tuple[str, ...]  # () with a loss: replay-only fine-tuning
    loss: str | None  # None: the teacher, untouched (baseline)
    curation: CurationSettings

    @classmethod
    def of(cls, ws: Workspace, name: str = "default") -> Variant:
        """The run's own configuration (``ws.config``'s methods, loss and curation)."""
        return cls(name, tuple(ws.config.methods), ws.config.loss, ws.config.curation)


@dataclass
class Training:
    """One fresh student of one (split, seed) of a variant."""

    split: Split
    seed: int
    pairs: Pairs
    student: Any  # the fine-tuned AudioTextModel
    result: Any  # claptune.train.TrainResult


class Runner:
    """The split x seed loop over one ``Workspace``."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._pairs: dict[tuple, Pairs] = {}

    def pairs(self, split: Split, variant: Variant) -> Pairs:
        """The pairs of ``variant``'s curation on ``split``, curated once per split and
        (methods, settings), whichever variants share them."""
        key = (split.index, variant.methods, repr(variant.curation))
        if key not in self._pairs:
            self._pairs[key] = self.ws.curate(split, variant.methods, variant.curation)
        return self._pairs[key]

    def trainings(
        self, variant: Variant, on_split: Callable[[Split, Pairs], None] | None = None
    ) -> Iterator[Training]:
        """One fresh student per (split, seed), splits outer, seeds inner; ``on_split`` is told
        each split's pairs before its first training."""
        if variant.loss is None:
            raise ValueError("the teacher variant trains nothing")
        for split in self.ws.splits:
            pairs = self.pairs(split, variant)
            if on_split is not None:
                on_split(split, pairs)
            for seed in self.ws.seeds:
                # each run shows fit's epoch bar (elapsed time included) where progress is on
                student, result = self.ws.train(
                    pairs, variant.loss, seed, progress=self.ws.progress
                )
                yield Training(split, seed, pairs, student, result)

    def runs(
        self,
        variant: Variant,
        on_run: Callable[[Training, RunOutcome], None] | None = None,
        keep_scores: bool = True,
        on_split: Callable[[Split, Pairs], None] | None = None,
    ) -> list[RunOutcome]:
        """What every (split, seed) of ``variant`` measured (``Workspace.outcome``); the teacher
        variant scores the teacher itself on every run. ``keep_scores=False`` drops each run's
        (N, C) class scores once measured (the report keeps predictions only)."""
        ws = self.ws
        if variant.loss is None:
            return [
                RunOutcome(
                    split.index,
                    seed,
                    split.test,
                    ws.pred_before,
                    ws.pred_before,
                    retrieval_after=ws.retrieval_before,
                )
                for split in ws.splits
                for seed in ws.seeds
            ]
        out = []
        for t in self.trainings(variant, on_split):
            run = ws.outcome(t.split, t.seed, t.pairs, t.student, t.result)
            if not keep_scores:
                run.scores_after = run.transfer_scores_after = None
            if on_run is not None:
                on_run(t, run)
            out.append(run)
        return out


@dataclass
class FinalModel:
    """The model ``improve`` and ``adapt`` save (``train_final``)."""

    model: Any  # the AudioTextModel saved: the student, or the teacher when the guard refused
    saved: str  # "student" or "teacher"
    student: Any  # the student trained on every clip but the guard slice
    split: Split  # its clips: adapt = curated from, guard = the guard's slice
    pairs: Pairs
    run: RunOutcome  # what Workspace.outcome measured of the student (guard included)

    @property
    def guard(self) -> dict[str, float | int | bool]:
        return self.run.guard

    @property
    def n_clips(self) -> int:
        return len(self.split.adapt)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)


def train_final(ws: Workspace, variant: Variant | None = None) -> FinalModel:
    """The model worth saving: one student trained with ``variant`` (the run's configuration by
    default) on every clip of the target (no label read) except the guard's held-out slice
    (``guard_fraction``), with the first training seed; the guard then decides on that slice's
    audio whether it beats teacher + transduction, and the teacher is kept otherwise."""
    variant = variant or Variant.of(ws)
    split = whole_pool_split(len(ws.items), ws.config.seed, ws.config.guard_fraction)
    pairs = ws.curate(split, variant.methods, variant.curation)
    log_progress(
        f"model worth saving: {len(split.adapt)} clips curate {describe(pairs)}, "
        f"{len(split.guard_clips)} held out for the guard",
        ws.progress,
    )
    # the one long training of the invocation shows its bar (the measured runs log a line each)
    student, result = ws.train(pairs, variant.loss, ws.seeds[0], progress=ws.progress)
    run = ws.outcome(split, ws.seeds[0], pairs, student, result)
    keep = guard_keeps(run.guard)
    n_guard = len(split.guard_clips)
    kept = "saved" if ws.config.save_model else "kept"  # --no-save-model writes no model
    if keep:
        verdict = "the guard kept it"
    elif not run.guard.get("decidable", True):
        verdict = (
            "the guard could not decide: "
            f"{undecided_reason(n_guard, int(run.guard.get('discordant', 0)))}; the teacher is "
            f"{kept} instead (more clips, or a larger --guard-fraction, let it decide)"
        )
    else:
        verdict = (
            f"the guard found it not clearly better than teacher + transduction on {n_guard} "
            f"held-out clips (no label read): the teacher is {kept} instead"
        )
    if not keep and ws.config.save_model:
        verdict += (
            "; the student is written to RUN/student as well (--keep-student)"
            if ws.config.keep_student
            else "; pass --keep-student to write the student to RUN/student as well"
        )
    message = f"{kept} model: trained on {len(split.adapt)} clips; {verdict}"
    if keep:
        log_progress(message, ws.progress)
    else:  # a warning, shown even with --quiet
        logger.warning(message)
    return FinalModel(
        model=student if keep else ws.teacher,
        saved="student" if keep else "teacher",
        student=student,
        split=split,
        pairs=pairs,
        run=run,
    )


__all__ = ["FinalModel", "Runner", "Training", "Variant", "train_final"]
