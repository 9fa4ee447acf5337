"""Typed records of the other JSON files claptune writes, like ``Report`` for report.json:

- ``Ablation`` (with one ``AblationRow`` per configuration): ablation.json of ``claptune
  ablate`` (``claptune.improve.ablation``);
- ``ZeroShotRecord``: zeroshot.json of ``claptune zeroshot``.

Each is a ``JsonRecord``: ``to_dict``/``to_json`` write the file's keys in their order,
``read``/``from_dict`` give the typed record back (unknown keys are an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from claptune.report.schema import JsonRecord, PipelineRow, to_dict
from claptune.stats import BootstrapResult, McNemarResult, Spread


@dataclass
class AblationRow(JsonRecord):
    """One configuration of an ablation over the same splits x seeds (test parts only)."""

    name: str
    methods: list[str]
    loss: str | None  # None: the teacher, untouched
    curation: dict[str, Any]  # the row's curation overrides
    n_runs: int
    before: Spread | None
    after: Spread | None
    gain: Spread | None
    after_all: Spread | None  # every clip, not only the test parts
    class_mean_before: Spread | None
    class_mean_after: Spread | None
    class_mean_gain: Spread | None
    mcnemar: McNemarResult | None  # pooled; not valid for shared test clips (appendix only)
    bootstrap: BootstrapResult | None  # clips resampled, splits held fixed
    class_mean_bootstrap: BootstrapResult | None
    two_stage: BootstrapResult | None  # the headline interval: splits and clips resampled
    class_mean_two_stage: BootstrapResult | None
    # the label-free pipelines on the same test parts (teacher peers, student + transduction)
    pipelines: dict[str, PipelineRow] = field(default_factory=dict)
    guard: dict[str, float | int | bool] = field(default_factory=dict)
    prior_tv: float | None = None  # class shares curation balanced to vs the pool's (scored)
    prior_tv_uniform: float | None = None
    label_free: float | None = None  # the selection signal (ablation.SIGNAL), mean over runs
    label_free_signals: dict[str, float] = field(default_factory=dict)
    pairs: Spread | None = None  # curated pairs per run
    retrieval_after: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(kw_only=True)
class Ablation(JsonRecord):
    """ablation.json: every configuration trained and scored on one set of splits and seeds."""

    model: str
    target: str
    root: str | None
    n_clips: int
    n_classes: int
    splits: list[dict[str, Any]]
    seeds: list[int]
    retrieval_before: dict[str, float]
    rows: list[AblationRow] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # so far: the file is rewritten after each row
    # which trained row a user would choose: by the label-free signal, and by the labels
    picks: dict[str, str | None] = field(default_factory=dict)
    # the clips in the order of the splits' indices and of scores.npz (whose "labels" are their
    # classes, indices into class_names), so that every figure can be recomputed from the files
    items: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class ZeroShotRecord(JsonRecord):
    """zeroshot.json: a model's zero-shot accuracy on a labelled target, every prediction."""

    accuracy: float
    n_clips: int
    n_correct: int
    per_class: dict[str, float]
    per_class_n: dict[str, int]
    per_fold: dict[str, float] | None  # None for a data set without folds
    class_names: list[str]
    confusion: list[list[int]]
    config: dict[str, Any]
    failed: list[dict[str, str]]  # path, reason
    predictions: list[dict[str, str]]  # path, label, predicted
    transductive: dict[str, Any] | None = None  # method, accuracy (with --transductive)

    def to_dict(self) -> dict[str, Any]:
        out = to_dict(self)
        if self.transductive is None:
            del out["transductive"]
        return out


__all__ = ["Ablation", "AblationRow", "ZeroShotRecord"]
