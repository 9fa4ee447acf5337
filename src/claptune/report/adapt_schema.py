"""The typed schema of an ``adapt`` run's report.json: one ``AdaptReport`` and its parts.

``claptune adapt`` has no labels, so its report holds what can be measured without them: the
class shares the curation balanced the pool to, the teacher's refined pseudo-labels (how many
per class, how sure), whether the student still predicts what the teacher predicted, the
forgetting and transfer checks of ``improve`` (``claptune.report.schema``'s ``Forgetting`` and
``Transfer``), and, only when a labelled set is named for scoring, before/after accuracy on it.

Conversion both ways is ``claptune.report.schema``'s ``to_dict`` / ``from_dict``; add a field
with a default so that older reports still load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from claptune.report.schema import (
    ClassPriors,
    Forgetting,
    JsonRecord,
    ModelInfo,
    TargetInfo,
    Transfer,
)
from claptune.stats import BootstrapResult


@dataclass
class Histogram:
    """Counts of one sureness score of the teacher's refined pseudo-labels over the clips."""

    edges: list[float]  # bin edges, len(counts) + 1
    counts: list[int]  # every clip
    counts_curated: list[int]  # the clips kept as pseudo pairs
    threshold: float | None = None  # the curation's cut on this score, when it cut on it


@dataclass
class ClassRow:
    """One class: what curation aimed at and chose, and what teacher and student predict."""

    share: float | None = None  # the class share curation balanced the pool to
    pseudo_labels: int = 0  # clips whose refined teacher label is this class
    curated: int = 0  # pseudo pairs of this class (the surest of those clips)
    teacher: int = 0  # clips the teacher's zero-shot classifier puts in this class
    student: int = 0  # the same for the student
    unchanged: float | None = None  # of the teacher's clips, the share the student keeps here


@dataclass
class Agreement:
    """Teacher/student agreement: the share of clips whose zero-shot class is unchanged."""

    share: float
    n_clips: int
    curated: float | None = None  # on the clips curated as pseudo pairs
    not_curated: float | None = None  # on the others (what the student learned to move)


@dataclass
class EvalScores:
    accuracy: float
    class_mean_accuracy: float  # mean over the classes present of each class's accuracy


@dataclass
class LabelledEval:
    """Zero-shot scores on a labelled set named for scoring only (``--eval``): never read by
    curation, training or any choice of the run."""

    target: str
    root: str | None
    n_clips: int
    n_classes: int  # classes present in the labelled set (all of them among the run's)
    overlap: int  # its clips that were also adaptation clips (used there without labels)
    before: EvalScores
    after: EvalScores
    bootstrap: BootstrapResult | None = None  # clip accuracy change, clips resampled
    class_mean_bootstrap: BootstrapResult | None = None
    per_class_before: dict[str, float] = field(default_factory=dict)
    per_class_after: dict[str, float] = field(default_factory=dict)
    failed_clips: list[dict[str, str]] = field(default_factory=list)


@dataclass(kw_only=True)
class AdaptReport(JsonRecord):
    """report.json of an ``adapt`` run; field order is the file's key order."""

    claptune_version: str
    model: ModelInfo
    target: TargetInfo  # the unlabeled clips and the class names
    seed: int
    methods: list[str]
    loss: str
    templates: list[str] = field(default_factory=list)
    n_pairs: dict[str, int] = field(default_factory=dict)  # per method, then "total"
    priors: ClassPriors | None = None  # the class shares curation balanced to
    criterion: str = "confidence"  # the score the curation's threshold cut on
    confidence: Histogram | None = None
    margin: Histogram | None = None
    classes: dict[str, ClassRow] = field(default_factory=dict)
    agreement: Agreement | None = None
    forgetting: Forgetting | None = None
    transfer: Transfer | None = None
    label_free: dict[str, float] = field(default_factory=dict)
    evaluation: LabelledEval | None = None
    model_dir: str | None = None
    # the label-free guard (Workspace.guard): its signals on the held-out clips and its decision
    guard: dict[str, float] = field(default_factory=dict)
    saved: str = "student"  # which model model_dir holds and predictions.csv comes from
    # predictions.csv: the transduction used and how many clips each class received
    predictions: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # the training overrides used
    train_result: dict[str, Any] = field(default_factory=dict)  # steps, epochs, final loss
    failed_clips: list[dict[str, str]] = field(default_factory=list)
    timing_s: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # AdaptConfig.to_dict()


__all__ = ["AdaptReport", "Agreement", "ClassRow", "EvalScores", "Histogram", "LabelledEval"]
