"""Pseudo-label precision: how often a curated pseudo pair named its clip's true class, and the
records of report.json that hold it (``Report.pseudo_precision``).

Scored after the run from the target's labels, for the report only; nothing the run chose
(pairs, thresholds, models) ever reads it, so it cannot leak labels into the method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

PSEUDO_METHODS = ("pseudo", "pseudo_refined")  # the methods whose caption is a class name


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


def pseudo_label_precision(
    pairs: Iterable[dict],
    items: Sequence[str],
    labels: Sequence[int] | None,
    class_names: Sequence[str],
    split: int = 0,
    methods: Sequence[str] = PSEUDO_METHODS,
) -> PseudoPrecision | None:
    """Precision per class of the ``methods`` rows of ``pairs`` (``pair_rows`` dicts: audio,
    class, method) whose audio is one of the target's ``items``, against ``labels``.

    None when the target has no labels or no such pair exists. Every class of ``class_names``
    gets an entry (n=0 and precision None for a class no pseudo pair named)."""
    if labels is None:
        return None
    from claptune.evaluate.metrics import label_precision

    truth = {str(item): int(lab) for item, lab in zip(items, labels, strict=True)}
    index = {c: k for k, c in enumerate(class_names)}
    rows = [
        r
        for r in pairs
        if r.get("method") in methods and str(r["audio"]) in truth and r.get("class") in index
    ]
    if not rows:
        return None
    used = {str(r["method"]) for r in rows}
    n, correct = label_precision(
        np.array([index[r["class"]] for r in rows]),
        np.array([truth[str(r["audio"])] for r in rows]),
        len(class_names),
    )
    total, hits = int(n.sum()), int(correct.sum())
    per_class = {
        c: ClassPrecision(
            n=int(n[k]),
            correct=int(correct[k]),
            precision=int(correct[k]) / int(n[k]) if n[k] else None,
        )
        for k, c in enumerate(class_names)
    }
    return PseudoPrecision(
        split=split,
        methods=[m for m in methods if m in used],
        n=total,
        correct=hits,
        precision=hits / total,
        per_class=per_class,
    )


__all__ = ["PSEUDO_METHODS", "ClassPrecision", "PseudoPrecision", "pseudo_label_precision"]
