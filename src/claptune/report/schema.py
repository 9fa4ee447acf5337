"""The typed schema of report.json: ``Report`` (``improve``) and ``AdaptReport`` (``adapt``).

Both extend ``BaseReport``, the fields every report holds (the model, the target, the checks,
the saved model, the configuration), and nest the records below; the renderers (Markdown, HTML,
the CLI summaries) read their attributes. ``to_json()`` writes report.json in each report's own
key order (``KEYS``), and ``from_json()`` reads it back exactly (``from_json(r.to_json()) == r``).

To add a figure: give the dataclass that owns it a new field *with a default* (``None`` or a
``field(default_factory=...)``), so reports written before it still load (a report's new field
goes at the end of its file unless named in ``KEYS``). Nested dataclasses, ``X | None``,
``list[X]`` and ``dict[str, X]`` are converted both ways by ``to_dict`` / ``from_dict``;
anything else (plain numbers, strings, free-form dicts) is stored as is.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from claptune.errors import ClaptuneError
from claptune.report.precision import ClassPrecision, PseudoPrecision
from claptune.stats import BootstrapResult, McNemarResult, Spread

T = TypeVar("T")


# -- the records both reports nest -------------------------------------------------------------
@dataclass
class ModelInfo:
    spec: str  # what the user asked for: registered name, folder or hub id
    backend: str | None = None
    identity: dict[str, Any] | None = None  # the model's identity (weights, preprocessing)


@dataclass
class TargetInfo:
    name: str
    root: str | None = None
    n_clips: int = 0
    n_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # clip paths; splits index into these


@dataclass
class SplitPrior:
    """The class shares one split's curation balanced its pool to, and how far they were from the
    pool's true shares (scored after the run; the estimate never sees a label)."""

    split: int
    estimated: dict[str, float]
    true: dict[str, float] | None = None  # shares of the pool's labels, where labels exist
    tv: float | None = None  # total variation distance estimated <-> true
    tv_uniform: float | None = None  # the same for a uniform prior, for reference


@dataclass
class ClassPriors:
    method: str  # uniform | em (curation setting pseudo_refined_prior)
    splits: list[SplitPrior] = field(default_factory=list)
    tv: Spread | None = None  # over splits
    tv_uniform: Spread | None = None


@dataclass
class Forgetting:
    """Retrieval on the held-out part of the paired corpus: teacher, then students."""

    n_pairs: int
    before: dict[str, float]
    after: dict[str, Spread]
    change: dict[str, float] = field(default_factory=dict)
    held_out_source: str = ""
    held_out_audio: list[str] = field(default_factory=list)


@dataclass
class EvalScores:
    """Zero-shot scores of one model on one set of clips."""

    accuracy: float
    class_mean_accuracy: float  # mean over the classes present of each class's accuracy


TransferScores = EvalScores  # the name improve's transfer check builds it by


@dataclass
class TransferSpreads:
    accuracy: Spread
    class_mean_accuracy: Spread


@dataclass
class Transfer:
    """Zero-shot on held-out corpus clips whose caption names one target class."""

    n_clips: int
    n_classes: int
    clips_per_class: dict[str, int]
    before: EvalScores
    after: TransferSpreads
    items: list[str] = field(default_factory=list)


# -- the records of an improve run (over splits x seeds) --------------------------------------
@dataclass
class Side:
    """Zero-shot figures of one side (the teacher before, the students after) over runs."""

    accuracy: float  # mean over runs, test parts
    accuracy_spread: Spread
    accuracy_all: float | None = None  # mean over runs, all clips
    accuracy_all_spread: Spread | None = None
    per_class: dict[str, float | None] = field(default_factory=dict)  # None: never scored
    per_class_std: dict[str, float | None] = field(default_factory=dict)
    # mean over the classes of the test part of each class's accuracy, per run, then over runs:
    # every class counts the same, so a skewed target's tail is not drowned by its head
    class_mean_accuracy: float | None = None
    class_mean_accuracy_spread: Spread | None = None


@dataclass
class Gain:
    """After minus before, per run, then mean and spread over runs."""

    accuracy: float
    accuracy_spread: Spread
    accuracy_all: float | None = None
    accuracy_all_spread: Spread | None = None
    class_mean_accuracy: float | None = None
    class_mean_accuracy_spread: Spread | None = None


@dataclass
class PairedTest:
    """Before/after on the test parts. The clip bootstraps respect the design (runs share test
    clips, so whole clips are resampled) and lead; McNemar on the outcomes of all runs pooled
    treats them as independent and is optimistic, kept as a secondary figure."""

    mcnemar: McNemarResult | None = None  # test-part outcomes of all runs pooled (optimistic)
    bootstrap: BootstrapResult | None = None  # clip accuracy, resamples clips
    note: str = ""
    class_mean_bootstrap: BootstrapResult | None = None  # class-mean accuracy, resamples clips
    # the headline intervals: splits and clips resampled (stats.two_stage_bootstrap)
    two_stage: BootstrapResult | None = None
    class_mean_two_stage: BootstrapResult | None = None


@dataclass
class CurationCounts:
    pairs: dict[str, Spread] = field(default_factory=dict)  # per method (+ "total"), per run
    per_class: dict[str, float] = field(default_factory=dict)  # mean pairs per run


@dataclass
class RunRecord:
    """One (split, seed) run."""

    split: int
    seed: int
    before_accuracy: float  # test part
    after_accuracy: float
    before_accuracy_all: float | None = None
    after_accuracy_all: float | None = None
    n_pairs: int = 0
    mcnemar: McNemarResult | None = None
    retrieval_after: dict[str, float] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)  # what fit reported
    before_class_mean_accuracy: float | None = None  # test part
    after_class_mean_accuracy: float | None = None
    # label-free selection signals of this run (no target label read; improve.runs.
    # label_free_signals): pseudo_agreement, pseudo_agreement_held_out, transfer_class_mean
    label_free: dict[str, float] = field(default_factory=dict)
    # test-part accuracy of each label-free pipeline of this run (scored only; improve.runs)
    transductive: dict[str, float] = field(default_factory=dict)
    # Workspace.guard: signals, decision
    guard: dict[str, float | int | bool] = field(default_factory=dict)


@dataclass
class PipelineRow:
    """One label-free pipeline scored on the test parts of all runs, against the teacher's plain
    zero-shot ensemble: accuracy and class mean pooled over the runs' test outcomes, the gains'
    point estimates from the same pooled estimator (so a row minus the teacher's row is its
    gain), with two-stage intervals."""

    accuracy: float
    class_mean_accuracy: float
    gain: BootstrapResult
    class_mean_gain: BootstrapResult
    trained: bool  # uses the fine-tuned student


@dataclass
class Transductive:
    """Label-free pipelines side by side on the same test parts (improve.runs), and the guard."""

    method: str  # the transduction the student and the guard use
    rows: dict[str, PipelineRow] = field(default_factory=dict)
    # the guard over runs: how often it kept the student, and (scored only) how often that was
    # right: kept a student whose transductive accuracy beat teacher + transduction, or rejected
    # one that did not
    guard: dict[str, float | int | bool] = field(default_factory=dict)


@dataclass
class RunsSummary:
    """What ``summarize_runs`` computes from the runs; the middle block of a ``Report``."""

    n_runs: int
    before: Side
    after: Side
    gain: Gain
    paired_test: PairedTest = field(default_factory=PairedTest)
    curation: CurationCounts = field(default_factory=CurationCounts)
    runs: list[RunRecord] = field(default_factory=list)
    transductive: Transductive | None = None


@dataclass
class ModelRun:
    split: int = 0  # whose curated pairs the report shows (and, before 0.x, whose student)
    seed: int = 0
    # what model_dir holds: the model trained after the measured runs on every clip but the
    # guard's held-out slice, with the run's configuration (no label read), or the teacher when
    # the guard rejected that student
    saved: str = ""
    n_clips: int = 0  # clips curated for it
    n_pairs: int = 0  # pairs curated for it
    # Workspace.guard on the held-out slice
    guard: dict[str, float | int | bool] = field(default_factory=dict)


# -- the records of an adapt run (one run, no label) ------------------------------------------
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
    labelled: int | None = None  # clips predictions.csv labels with this class (all clips)


@dataclass
class Agreement:
    """Teacher/student agreement: the share of clips whose zero-shot class is unchanged."""

    share: float
    n_clips: int
    curated: float | None = None  # on the clips curated as pseudo pairs
    not_curated: float | None = None  # on the others (what the student learned to move)


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


# -- the reports --------------------------------------------------------------------------------
class JsonRecord:
    """JSON round trip of a report dataclass: ``to_json``/``from_json`` (exact), ``read``."""

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any]) -> T:
        return from_dict(cls, values)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.from_dict(json.loads(text))

    @classmethod
    def read(cls: type[T], path: str | Path) -> T:
        """A report.json written by claptune."""
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass(kw_only=True)
class BaseReport(JsonRecord):
    """The fields every report.json holds. Each report lists its file's key order in ``KEYS``:
    its fields and these interleave there as they always did, so report.json keeps its bytes.
    ``label_free`` is each report's own: one run's signals (adapt), their spread over runs
    (improve)."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    claptune_version: str
    model: ModelInfo
    target: TargetInfo  # the clips and the class names
    templates: list[str] = field(default_factory=list)
    priors: ClassPriors | None = None  # the class shares curation balanced its pool to
    forgetting: Forgetting | None = None
    transfer: Transfer | None = None
    model_dir: str | None = None  # the saved model, loadable by load_model
    # the student the guard did not keep, written beside the saved teacher (keep_student)
    student_dir: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # the training overrides used
    failed_clips: list[dict[str, str]] = field(default_factory=list)  # item, reason
    timing_s: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the run's config, to_dict()


@dataclass(kw_only=True)
class Report(BaseReport):
    """report.json of an ``improve`` run."""

    KEYS: ClassVar[tuple[str, ...]] = tuple(
        "claptune_version model target splits seeds n_runs before after gain paired_test "
        "curation runs templates forgetting transfer model_dir student_dir model_run train "
        "failed_clips "
        "timing_s config priors label_free pseudo_precision transductive".split()
    )

    splits: list[dict[str, Any]] = field(default_factory=list)  # Split.to_dict() of each
    seeds: list[int] = field(default_factory=list)
    n_runs: int
    before: Side
    after: Side
    gain: Gain
    paired_test: PairedTest = field(default_factory=PairedTest)
    curation: CurationCounts = field(default_factory=CurationCounts)
    runs: list[RunRecord] = field(default_factory=list)
    model_run: ModelRun = field(default_factory=ModelRun)  # whose student model_dir holds
    # mean over runs of each label-free selection signal (RunRecord.label_free)
    label_free: dict[str, Spread] = field(default_factory=dict)
    pseudo_precision: PseudoPrecision | None = None  # split 0's pseudo labels vs the true ones
    transductive: Transductive | None = None  # label-free pipelines side by side, the guard

    @classmethod
    def from_summary(cls, summary: RunsSummary, **rest: Any) -> Report:
        """A report from ``summarize_runs``' figures and the run's other fields."""
        parts = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}
        return cls(**parts, **rest)


@dataclass(kw_only=True)
class AdaptReport(BaseReport):
    """report.json of an ``adapt`` run: what can be measured without labels, and, only when a
    labelled set is named for scoring, before/after accuracy on it."""

    KEYS: ClassVar[tuple[str, ...]] = tuple(
        "claptune_version model target seed methods loss templates n_pairs priors criterion "
        "confidence margin classes agreement forgetting transfer label_free evaluation "
        "model_dir student_dir guard saved predictions train train_result failed_clips timing_s "
        "config".split()
    )

    seed: int
    methods: list[str]
    loss: str
    n_pairs: dict[str, int] = field(default_factory=dict)  # per method, then "total"
    criterion: str = "confidence"  # the score the curation's threshold cut on
    confidence: Histogram | None = None
    margin: Histogram | None = None
    classes: dict[str, ClassRow] = field(default_factory=dict)
    agreement: Agreement | None = None
    label_free: dict[str, float] = field(default_factory=dict)  # this run's selection signals
    evaluation: LabelledEval | None = None
    # the label-free guard (Workspace.guard): its signals on the held-out clips and its decision
    guard: dict[str, float | int | bool] = field(default_factory=dict)
    saved: str = "student"  # which model model_dir holds and predictions.csv comes from
    # predictions.csv: the transduction used and how many clips each class received
    predictions: dict[str, Any] = field(default_factory=dict)
    train_result: dict[str, Any] = field(default_factory=dict)  # steps, epochs, final loss


def to_dict(obj: Any) -> Any:
    """A dataclass (and what it nests) as JSON-able dicts, lists and numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        keys = getattr(obj, "KEYS", ())  # a report's key order (BaseReport), then the rest
        names = [*keys, *(f.name for f in dataclasses.fields(obj) if f.name not in keys)]
        return {name: to_dict(getattr(obj, name)) for name in names}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """The dataclass ``cls`` from ``to_dict``'s output; unknown keys are an error."""
    if not isinstance(values, dict):
        raise ClaptuneError(f"{cls.__name__}: expected an object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ClaptuneError(f"{cls.__name__}: unknown keys {unknown}")
    try:
        return cls(**{k: _convert(hints[k], v) for k, v in values.items()})
    except TypeError as err:  # a required key missing
        raise ClaptuneError(f"{cls.__name__}: {err}") from None


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_convert(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _convert(item, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    return value


__all__ = [
    "AdaptReport",
    "Agreement",
    "BaseReport",
    "ClassPrecision",
    "ClassPriors",
    "ClassRow",
    "CurationCounts",
    "EvalScores",
    "Forgetting",
    "Gain",
    "Histogram",
    "JsonRecord",
    "LabelledEval",
    "ModelInfo",
    "ModelRun",
    "PairedTest",
    "PipelineRow",
    "PseudoPrecision",
    "Report",
    "RunRecord",
    "RunsSummary",
    "Side",
    "SplitPrior",
    "TargetInfo",
    "Transductive",
    "Transfer",
    "TransferScores",
    "TransferSpreads",
    "from_dict",
    "to_dict",
]
