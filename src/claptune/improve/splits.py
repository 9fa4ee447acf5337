"""Seeded, recorded splits of a target task into an adaptation and a test part.

The adaptation part's audio may be used without its labels (curation, pseudo-labels); the
test part is only ever scored. Every split is a pure function of the clips (labels only for
``stratified``, groups only for ``grouped``), the fraction and the seed, and is written into the
run's report so that a result can be re-scored.

Strategies:

- ``grouped``: whole source recordings go to one side (ESC-50's ``src_file``, UrbanSound8K's
  ``fsID``): clips cut from one recording never sit on both sides, and the pool's class shares
  are whatever the draw gives, as a user's own data would be. The default where the data set
  says which clips share a recording.
- ``random``: clips drawn at random, blind to labels: the default elsewhere.
- ``stratified``: every class split in the same proportion. It hands the unlabeled pool the
  exact class shares of the task, a prior that no user's own data comes with; kept for
  comparison with earlier runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from claptune.errors import ClaptuneError
from claptune.improve.config import STRATEGIES


@dataclass(frozen=True)
class Split:
    """One partition of a dataset's clips (indices into its items)."""

    index: int  # which of the run's splits this is
    seed: int  # the seed that drew it
    test_fraction: float
    adapt: np.ndarray  # sorted clip indices whose audio may be used without labels
    test: np.ndarray  # sorted clip indices that are only scored
    strategy: str = "stratified"
    # sorted clip indices kept out of curation and training, whose audio alone (never a label)
    # decides whether the student beats the teacher (the guard); empty: the test part's audio
    guard: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def guard_clips(self) -> np.ndarray:
        """The clips the label-free guard reads: the held-out slice, else the test part."""
        return self.guard if len(self.guard) else self.test

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "strategy": self.strategy,
            "adapt": self.adapt.tolist(),
            "test": self.test.tolist(),
            **({"guard": self.guard.tolist()} if len(self.guard) else {}),
        }


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")


def _split(n: int, test_idx, seed: int, index: int, test_fraction: float, strategy: str) -> Split:
    test = np.sort(np.asarray(test_idx, dtype=np.int64))
    adapt = np.setdiff1d(np.arange(n), test).astype(np.int64)
    return Split(
        index=index,
        seed=seed,
        test_fraction=test_fraction,
        adapt=adapt,
        test=test,
        strategy=strategy,
    )


def stratified_split(labels, test_fraction: float = 0.5, seed: int = 0, index: int = 0) -> Split:
    """Split the clips of every class at random into adaptation and test parts.

    Each class with n clips puts round(n * test_fraction) of them in the test part, but at
    least one in each part when it has two or more, so every class is both adapted and scored.
    """
    _check_fraction(test_fraction)
    y = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(members) * test_fraction))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.append(members[:n_test])
    test_idx = np.concatenate(test) if test else np.zeros(0, dtype=np.int64)
    return _split(y.size, test_idx, seed, index, test_fraction, "stratified")


def random_split(n: int, test_fraction: float = 0.5, seed: int = 0, index: int = 0) -> Split:
    """round(n * test_fraction) clips drawn at random (at least one on each side), no labels."""
    _check_fraction(test_fraction)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1) if n >= 2 else 0
    order = np.random.default_rng(seed).permutation(n)
    return _split(n, order[:n_test], seed, index, test_fraction, "random")


def grouped_split(
    groups: Sequence[str], test_fraction: float = 0.5, seed: int = 0, index: int = 0
) -> Split:
    """Whole groups (source recordings) drawn at random into the test part until it holds
    round(n * test_fraction) clips or, when a group overshoots, whichever of the two counts
    around that is closer; no labels."""
    _check_fraction(test_fraction)
    groups = [str(g) for g in groups]
    n = len(groups)
    names = sorted(set(groups))  # sorted first, so the draw does not depend on clip order
    members: dict[str, list[int]] = {g: [] for g in names}
    for i, g in enumerate(groups):
        members[g].append(i)
    want = n * test_fraction
    test: list[int] = []
    for g in np.random.default_rng(seed).permutation(len(names)):
        group = members[names[g]]
        if len(test) >= want:
            break
        if abs(len(test) + len(group) - want) > abs(len(test) - want) and test:
            continue  # this recording would overshoot more than it helps; try a smaller one
        test.extend(group)
    if len(test) == n:  # a single recording: nothing would be left to adapt on
        test = test[: n - 1]
    return _split(n, test, seed, index, test_fraction, "grouped")


def resolve_strategy(strategy: str, groups: Sequence[str] | None) -> str:
    """``auto`` -> ``grouped`` where the data set names source recordings, else ``random``."""
    if strategy not in STRATEGIES:
        raise ClaptuneError(
            f"unknown split strategy {strategy!r}; choose from {', '.join(STRATEGIES)}"
        )
    if strategy == "auto":
        return "grouped" if groups is not None else "random"
    if strategy == "grouped" and groups is None:
        raise ClaptuneError(
            "split strategy 'grouped' needs a data set that names each clip's "
            "source recording (ESC-50's src_file, UrbanSound8K's fsID); "
            "use --split random"
        )
    return strategy


def make_splits(
    labels,
    n_splits: int = 3,
    test_fraction: float = 0.5,
    seed: int = 0,
    strategy: str = "stratified",
    groups: Sequence[str] | None = None,
) -> list[Split]:
    """``n_splits`` independent splits; split i is drawn with seed ``seed + i``.

    ``labels`` are read by the ``stratified`` strategy alone (and for their count).
    """
    if n_splits < 1:
        raise ValueError("n_splits must be at least 1")
    strategy = resolve_strategy(strategy, groups)
    n = len(np.asarray(labels).ravel())
    out = []
    for i in range(n_splits):
        if strategy == "stratified":
            out.append(stratified_split(labels, test_fraction, seed + i, index=i))
        elif strategy == "random":
            out.append(random_split(n, test_fraction, seed + i, index=i))
        else:
            out.append(grouped_split(groups, test_fraction, seed + i, index=i))
    return out


def whole_pool_split(n: int, seed: int = 0, guard_fraction: float = 0.0) -> Split:
    """The one "split" of a target with no labels (``claptune adapt``): none is scored; a
    seeded ``guard_fraction`` of the clips (at least 2 when any) is held out of curation for the
    label-free guard, every other clip adapts."""
    if not 0.0 <= guard_fraction < 1.0:
        raise ValueError(f"guard_fraction must be in [0, 1), got {guard_fraction}")
    n_guard = 0 if guard_fraction == 0 else min(n - 1, max(2, round(guard_fraction * n)))
    guard = np.sort(np.random.default_rng(seed).permutation(n)[:n_guard]).astype(np.int64)
    return Split(
        index=0,
        seed=seed,
        test_fraction=0.0,
        adapt=np.setdiff1d(np.arange(n, dtype=np.int64), guard),
        test=np.zeros(0, dtype=np.int64),
        strategy="whole_pool",
        guard=guard,
    )


def corpus_holdout(
    audio: list[str], corpus: str, heldout_ids: list[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """(replay, held-out) indices of the corpus clips ``audio`` for the forgetting check, and
    where the held-out part comes from.

    A teacher whose metadata names the corpus clips it held out of its own training
    (``heldout_ids``, paths relative to the corpus, as ``claptune pretrain`` records) keeps
    exactly those out, so the check runs on pairs it never trained on; otherwise a seeded random
    ``fraction``.
    """
    held_ids = set(heldout_ids)
    if held_ids:
        base = Path(corpus)
        base = base.parent if base.suffix.lower() == ".csv" else base
        rel = [
            Path(a).relative_to(base).as_posix() if Path(a).is_relative_to(base) else a
            for a in audio
        ]
        held = np.array([i for i, r in enumerate(rel) if r in held_ids], dtype=np.int64)
        if len(held):
            keep = np.setdiff1d(np.arange(len(audio)), held)
            return keep, held, "the teacher's own pretraining hold-out"
    keep, held = holdout_indices(len(audio), fraction, seed=seed)
    return keep, held, f"random {fraction:.0%} (seed {seed})"


def holdout_indices(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) sorted indices of n items, a random ``fraction`` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_out = int(round(n * fraction))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


__all__ = [
    "STRATEGIES",
    "Split",
    "grouped_split",
    "corpus_holdout",
    "holdout_indices",
    "make_splits",
    "random_split",
    "resolve_strategy",
    "stratified_split",
    "whole_pool_split",
]
