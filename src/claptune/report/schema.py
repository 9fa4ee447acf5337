"""The typed schema of report.json: one ``Report`` dataclass and the parts it nests.

``improve`` builds a ``Report``; the renderers (Markdown, HTML, the CLI summary) read its
attributes; ``Report.to_json()`` writes report.json with the same keys as before, and
``Report.from_json()`` reads it back exactly (``from_json(r.to_json()) == r``).

To add a figure: give the dataclass that owns it a new field *with a default* (``None`` or a
``field(default_factory=...)``), so reports written before it still load. Nested dataclasses,
``X | None``, ``list[X]`` and ``dict[str, X]`` are converted both ways by ``to_dict`` /
``from_dict``; anything else (plain numbers, strings, free-form dicts) is stored as is.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from claptune.errors import ClaptuneError
from claptune.stats import BootstrapResult, McNemarResult, Spread

T = TypeVar("T")


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
    # the headline intervals: splits resampled, then clips within them (stats.two_stage_bootstrap)
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
    guard: dict[str, float] = field(default_factory=dict)  # Workspace.guard: signals, decision


@dataclass
class PipelineRow:
    """One label-free pipeline scored on the test parts of all runs, against the teacher's plain
    zero-shot ensemble: means over runs, gains with two-stage intervals (one estimator each)."""

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
    guard: dict[str, float] = field(default_factory=dict)


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
class Forgetting:
    """Retrieval on the held-out part of the paired corpus: teacher, then students."""

    n_pairs: int
    before: dict[str, float]
    after: dict[str, Spread]
    change: dict[str, float] = field(default_factory=dict)
    held_out_source: str = ""
    held_out_audio: list[str] = field(default_factory=list)


@dataclass
class TransferScores:
    accuracy: float
    class_mean_accuracy: float


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
    before: TransferScores
    after: TransferSpreads
    items: list[str] = field(default_factory=list)


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
class ClassPrecision:
    n: int  # curated pseudo pairs of this class whose audio is a target clip
    correct: int  # of those, how many name the clip's true class
    precision: float | None = None  # correct / n; None when n == 0


@dataclass
class PseudoPrecision:
    """How often the pseudo-labelled pairs of one split named the clip's true class (scored
    after the run from the target's labels; no choice of the run ever reads it)."""

    split: int
    methods: list[str]  # the curation methods scored (pseudo, pseudo_refined)
    n: int
    correct: int
    precision: float | None = None
    per_class: dict[str, ClassPrecision] = field(default_factory=dict)  # every target class


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
    guard: dict[str, float] = field(default_factory=dict)  # Workspace.guard on the held-out slice


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
class Report(JsonRecord):
    """report.json of an ``improve`` run; field order is the file's key order."""

    claptune_version: str
    model: ModelInfo
    target: TargetInfo
    splits: list[dict[str, Any]] = field(default_factory=list)  # Split.to_dict() of each
    seeds: list[int] = field(default_factory=list)
    n_runs: int
    before: Side
    after: Side
    gain: Gain
    paired_test: PairedTest = field(default_factory=PairedTest)
    curation: CurationCounts = field(default_factory=CurationCounts)
    runs: list[RunRecord] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    forgetting: Forgetting | None = None
    transfer: Transfer | None = None
    model_dir: str | None = None  # the saved student, loadable by load_model
    model_run: ModelRun = field(default_factory=ModelRun)  # whose student model_dir holds
    train: dict[str, Any] = field(default_factory=dict)  # the training overrides used
    failed_clips: list[dict[str, str]] = field(default_factory=list)  # item, reason
    timing_s: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # ImproveConfig.to_dict()
    priors: ClassPriors | None = None  # where a curation method balanced its pool
    # mean over runs of each label-free selection signal (RunRecord.label_free)
    label_free: dict[str, Spread] = field(default_factory=dict)
    pseudo_precision: PseudoPrecision | None = None  # split 0's pseudo labels vs the true ones
    transductive: Transductive | None = None  # label-free pipelines side by side, the guard

    @classmethod
    def from_summary(cls, summary: RunsSummary, **rest: Any) -> Report:
        """A report from ``summarize_runs``' figures and the run's other fields."""
        parts = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}
        return cls(**parts, **rest)


def to_dict(obj: Any) -> Any:
    """A dataclass (and what it nests) as JSON-able dicts, lists and numbers."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
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
    "ClassPrecision",
    "CurationCounts",
    "Forgetting",
    "Gain",
    "ModelInfo",
    "ModelRun",
    "PairedTest",
    "PseudoPrecision",
    "Report",
    "RunRecord",
    "RunsSummary",
    "Side",
    "TargetInfo",
    "Transfer",
    "TransferScores",
    "TransferSpreads",
    "from_dict",
    "to_dict",
]
