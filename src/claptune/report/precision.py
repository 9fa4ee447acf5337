"""Pseudo-label precision: how often a curated pseudo pair named its clip's true class, and the
records of report.json that hold it (``Report.pseudo_precision``).

Scored after the run from the target's labels, for the report only; nothing the run chose
(pairs, thresholds, models) ever reads it, so it cannot leak labels into the method.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

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
    truth = {str(item): class_names[int(lab)] for item, lab in zip(items, labels, strict=True)}
    n = dict.fromkeys(class_names, 0)
    correct = dict.fromkeys(class_names, 0)
    used: set[str] = set()
    for row in pairs:
        true = truth.get(str(row["audio"]))
        cls = row.get("class")
        if row.get("method") not in methods or true is None or cls not in n:
            continue
        used.add(str(row["method"]))
        n[cls] += 1
        correct[cls] += int(cls == true)
    total = sum(n.values())
    if not total:
        return None
    hits = sum(correct.values())
    per_class = {
        c: ClassPrecision(n=n[c], correct=correct[c], precision=correct[c] / n[c] if n[c] else None)
        for c in class_names
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
