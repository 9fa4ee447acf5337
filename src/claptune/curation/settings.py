"""What a curation run is told: the method settings and thresholds, without numpy or torch.

``CurationSettings`` holds every method's threshold and options (defaults from the one table of
``claptune.curation.methods``), ``SearchOptions`` how the similarity searches run, ``Threshold``
a raw cosine or a quantile of the observed scores. ``claptune improve``'s configuration and
the CLI read these without loading the numeric stack.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

from claptune.curation.methods import DEFAULT_THRESHOLDS, THRESHOLD_PRESETS
from claptune.errors import ClaptuneError

if TYPE_CHECKING:
    import numpy as np
    import torch

DEFAULT_BLOCK_SIZE = 4096  # rows per tile side: a 4096 x 4096 float32 tile is 64 MiB
CRITERIA = ("confidence", "margin")  # how pseudo ranks a clip's label
REFINES = ("none", "knn", "balance", "knn_balance", "crossfit_lp_balance")  # pseudo_refined
PRIORS = ("uniform", "em")  # the class shares balancing aims at
# EM's Dirichlet pseudo-clips per class: strength 1 collapsed onto a few classes on pools of
# 2-6 clips a class (bench/results/priors.md); 10 keeps the estimate near uniform there
DEFAULT_PRIOR_STRENGTH = 10.0


_QUANTILE = re.compile(r"^q(0?\.\d+|1(\.0*)?|0)$")


@dataclass(frozen=True)
class Threshold:
    """A raw score (``value``) or a quantile in [0, 1] of the observed scores (``quantile``)."""

    value: float | None = None
    quantile: float | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.quantile is None):
            raise ValueError("a Threshold is either a value or a quantile")
        if self.quantile is not None and not 0.0 <= self.quantile <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {self.quantile}")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"threshold must be finite, got {self.value}")

    @classmethod
    def parse(cls, spec: Threshold | float | str) -> Threshold:
        """``0.75`` / ``"0.75"`` (raw) or ``"q0.99"`` (quantile)."""
        if isinstance(spec, Threshold):
            return spec
        if isinstance(spec, str):
            text = spec.strip().lower()
            if text.startswith("q"):
                if not _QUANTILE.match(text):
                    raise ValueError(f"bad quantile threshold {spec!r}: write e.g. q0.99")
                return cls(quantile=float(text[1:]))
            try:
                return cls(value=float(text))
            except ValueError:
                raise ValueError(
                    f"bad threshold {spec!r}: a number (0.75) or a quantile (q0.99)"
                ) from None
        return cls(value=float(spec))

    def resolve(self, scores: np.ndarray) -> float:
        """The raw threshold: ``value``, or the ``quantile`` of ``scores`` (lower interpolation,
        so the threshold is an observed score and ``>=`` keeps it)."""
        if self.value is not None:
            return float(self.value)
        import numpy as np

        if len(scores) == 0:
            raise ValueError("cannot take a quantile of no scores")
        return float(np.quantile(scores, self.quantile, method="lower"))

    def __str__(self) -> str:
        return f"q{self.quantile:g}" if self.quantile is not None else f"{self.value:g}"


@dataclass(frozen=True)
class SearchOptions:
    """How the similarity searches run; the same for every method."""

    block_size: int = DEFAULT_BLOCK_SIZE  # rows per tile side; memory ~ 4 * block_size**2 bytes
    device: str | torch.device | None = None  # torch device of the tiles (None = CPU)
    distributed: bool = False  # under torchrun: each rank a slice of the queries
    progress: bool = False  # a bar over the query blocks of a search of several blocks

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")

    def kwargs(self) -> dict:
        return {
            "block_size": self.block_size,
            "device": self.device,
            "distributed": self.distributed,
            "progress": self.progress,
        }


DEFAULT_SEARCH = SearchOptions()  # frozen, so safe as a shared default argument


@dataclass
class CurationSettings:
    """Thresholds (raw cosine or "q<quantile>") and options of every method."""

    # None: the table's (q0.99), or no threshold with du_top_k
    du_threshold: float | str | None = None
    du_top_k: int | None = None  # top-k captions per clip instead of a threshold
    ds_threshold: float | str = DEFAULT_THRESHOLDS["ds"]
    ads_threshold: float | str = DEFAULT_THRESHOLDS["ads"]
    a2a_threshold: float | str = DEFAULT_THRESHOLDS["a2a"]
    a2a_top_k: int = 1  # DS captions per kept clip
    a2a_text_threshold: float | None = None  # and only those at or above this cosine
    pseudo_criterion: str = "confidence"
    pseudo_threshold: float | str = DEFAULT_THRESHOLDS["pseudo"]
    pseudo_max_per_class: int | None = None  # None: 2x a class's balanced share, 0: no cap
    # pseudo_refined: pseudo with the labels refined first (claptune.curation.pseudo); it
    # shares pseudo's criterion and per-class cap
    pseudo_refined_threshold: float | str = DEFAULT_THRESHOLDS["pseudo_refined"]
    # knn | balance | knn_balance | crossfit_lp_balance (cross-fitted label propagation, then
    # balancing: a clip's label from the other half's scores; bench/bench_guard.py compares)
    pseudo_refined_mode: str = "knn_balance"
    pseudo_refined_knn: int = 3  # neighbours of the knn step
    pseudo_refined_knn_weight: float = 0.5  # share of the neighbours' probabilities
    # the class shares balancing aims at: uniform (a balanced task), or em (the pool's shares
    # estimated without labels; claptune.curation.priors). Uniform stays the default: with the
    # default model (about 24 % zero-shot on 50 classes) EM's estimate was further from the true
    # shares than uniform on skewed pools too (docs/curation.md, bench/results/skewed.md)
    pseudo_refined_prior: str = "uniform"
    pseudo_refined_prior_strength: float = DEFAULT_PRIOR_STRENGTH  # EM's pseudo-clips per class
    search: SearchOptions = field(default=DEFAULT_SEARCH)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                f.name.endswith("_threshold")
                and f.name != "a2a_text_threshold"
                and value is not None
            ):
                try:
                    Threshold.parse(value)
                except ValueError as err:
                    raise ClaptuneError(f"{f.name}: {err}") from None
        for name in ("du_top_k", "a2a_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ClaptuneError(f"{name} must be >= 1, got {value}")
        if self.pseudo_criterion not in CRITERIA:
            raise ClaptuneError(f"pseudo_criterion must be one of {', '.join(CRITERIA)}")
        if self.pseudo_max_per_class is not None and self.pseudo_max_per_class < 0:
            raise ClaptuneError("pseudo_max_per_class must be >= 0")
        if self.pseudo_refined_mode not in REFINES[1:]:
            raise ClaptuneError(f"pseudo_refined_mode must be one of {', '.join(REFINES[1:])}")
        if self.pseudo_refined_prior not in PRIORS:
            raise ClaptuneError(f"pseudo_refined_prior must be one of {', '.join(PRIORS)}")
        if not self.pseudo_refined_prior_strength >= 0:
            raise ClaptuneError("pseudo_refined_prior_strength must be >= 0")
        if self.pseudo_refined_knn < 1 or not 0.0 <= self.pseudo_refined_knn_weight <= 1.0:
            raise ClaptuneError(
                "pseudo_refined_knn must be >= 1 and pseudo_refined_knn_weight in [0, 1]"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> CurationSettings:
        """The thresholds of table ``name`` (``quantile``, the default; ``paper``), then
        ``overrides``. du keeps no threshold of the table when ``du_top_k`` is given."""
        if name not in THRESHOLD_PRESETS:
            raise ClaptuneError(
                f"unknown threshold preset {name!r}; choose from {', '.join(THRESHOLD_PRESETS)}"
            )
        table = {f"{m}_threshold": v for m, v in THRESHOLD_PRESETS[name].items()}
        if overrides.get("du_top_k") is not None:
            table["du_threshold"] = None
        return cls.from_dict({**table, **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> CurationSettings:
        """Build from a mapping (a ``search`` mapping overrides the default search options),
        rejecting keys that are not fields."""
        from claptune.typed import from_mapping

        return from_mapping(cls, values, "curation settings")


__all__ = [
    "CRITERIA",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_PRIOR_STRENGTH",
    "DEFAULT_SEARCH",
    "PRIORS",
    "REFINES",
    "CurationSettings",
    "SearchOptions",
    "Threshold",
]
