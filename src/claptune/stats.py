"""Statistics for before/after comparisons: McNemar's test, a paired bootstrap, mean +- spread.

A zero-shot gain is only worth reporting if it is larger than the noise of the split and of
training. The tests here are paired: the same clips are scored by the model before and after
adaptation, so only the clips whose outcome changed carry information (McNemar), and a
bootstrap that resamples clips keeps the pairing. When several runs (splits x seeds) score
overlapping clips, ``paired_bootstrap`` takes ``groups`` (a clip id per outcome) and resamples
whole clips, so that one clip scored in several runs is not counted as independent evidence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom

from claptune.evaluate.metrics import class_mean_accuracy  # re-exported: its home is evaluate


@dataclass(frozen=True)
class Spread:
    """Summary of repeated measurements (runs over splits and seeds)."""

    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for a single value
    sem: float  # standard error of the mean
    min: float
    max: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, scale: float = 100.0, digits: int = 1, sign: bool = False) -> str:
        """'mean ± std' with values multiplied by ``scale`` (percent by default); ``sign``
        writes the mean's sign ('+4.0 ± 1.2', for gains). One value has no spread: its mean
        alone."""
        mean = f"{self.mean * scale:{'+' if sign else ''}.{digits}f}"
        return mean if self.n < 2 else f"{mean} ± {self.std * scale:.{digits}f}"


def mean_spread(values) -> Spread:
    """Mean, sample standard deviation, standard error, range and count of ``values``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_spread needs at least one value")
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return Spread(
        mean=float(x.mean()),
        std=std,
        sem=std / np.sqrt(x.size),
        min=float(x.min()),
        max=float(x.max()),
        n=int(x.size),
    )


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired correct/incorrect outcomes."""

    n: int  # paired outcomes
    both_correct: int
    only_before: int  # b: correct before, wrong after
    only_after: int  # c: wrong before, correct after
    both_wrong: int
    p_exact: float  # two-sided exact binomial test on the discordant pairs
    p_midp: float  # two-sided mid-p (less conservative, close to nominal level)

    def to_dict(self) -> dict:
        return asdict(self)


def mcnemar_from_counts(only_before: int, only_after: int) -> tuple[float, float]:
    """Two-sided exact and mid-p McNemar p-values from the discordant counts b and c."""
    b, c = int(only_before), int(only_after)
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0, 1.0
    k = min(b, c)
    p_exact = min(1.0, 2.0 * float(binom.cdf(k, n, 0.5)))
    p_midp = min(1.0, 2.0 * (float(binom.cdf(k, n, 0.5)) - 0.5 * float(binom.pmf(k, n, 0.5))))
    return p_exact, p_midp


def mcnemar(correct_before, correct_after) -> McNemarResult:
    """McNemar's test for two boolean arrays of per-clip correctness (same clips, same order)."""
    before = np.asarray(correct_before, dtype=bool).ravel()
    after = np.asarray(correct_after, dtype=bool).ravel()
    if before.shape != after.shape:
        raise ValueError(f"paired outcomes differ in length: {before.size} vs {after.size}")
    only_before = int(np.sum(before & ~after))
    only_after = int(np.sum(~before & after))
    p_exact, p_midp = mcnemar_from_counts(only_before, only_after)
    return McNemarResult(
        n=int(before.size),
        both_correct=int(np.sum(before & after)),
        only_before=only_before,
        only_after=only_after,
        both_wrong=int(np.sum(~before & ~after)),
        p_exact=p_exact,
        p_midp=p_midp,
    )


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of the accuracy difference (after - before)."""

    difference: float  # observed mean(after) - mean(before), on the pooled outcomes
    ci_low: float  # percentile confidence interval of the difference
    ci_high: float
    confidence: float
    p_value: float  # two-sided: how often the resampled difference falls on the other side of 0
    n_resamples: int
    n_units: int  # resampled units: outcomes, or groups (clips) when groups were given
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(
    correct_before,
    correct_after,
    groups=None,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap the difference in accuracy between paired outcomes.

    ``groups`` (optional, one id per outcome) makes it a cluster bootstrap: whole groups are
    resampled with replacement, and the difference of a resample is the difference of the
    pooled outcomes of the drawn groups.
    """
    before = np.asarray(correct_before, dtype=np.float64).ravel()
    after = np.asarray(correct_after, dtype=np.float64).ravel()
    if before.shape != after.shape:
        raise ValueError(f"paired outcomes differ in length: {before.size} vs {after.size}")
    if before.size == 0:
        raise ValueError("paired_bootstrap needs at least one outcome")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if groups is None:
        group_ids = np.arange(before.size)
    else:
        group_ids = np.unique(np.asarray(groups).ravel(), return_inverse=True)[1]
        if group_ids.size != before.size:
            raise ValueError("groups must give one id per outcome")
    n_groups = int(group_ids.max()) + 1
    # per group: summed difference and count, so a resample is a weighted sum over groups
    diff_sum = np.bincount(group_ids, weights=after - before, minlength=n_groups)
    count = np.bincount(group_ids, minlength=n_groups).astype(np.float64)
    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // n_groups)  # bounded memory for the (chunk, n_groups) draws
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        draws = rng.integers(0, n_groups, size=(stop - start, n_groups))
        samples[start:stop] = diff_sum[draws].sum(axis=1) / count[draws].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    # (count + 1) / (n + 1): a resampled p-value is never exactly 0
    tail = min(np.sum(samples <= 0.0), np.sum(samples >= 0.0))
    p_value = min(1.0, 2.0 * (tail + 1) / (n_resamples + 1))
    return BootstrapResult(
        difference=float(after.mean() - before.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_value=float(p_value),
        n_resamples=n_resamples,
        n_units=n_groups,
        seed=seed,
    )


def class_mean_bootstrap(
    correct_before,
    correct_after,
    labels,
    groups,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Cluster bootstrap of the class-mean accuracy difference (after - before).

    One outcome per (run, test clip): ``labels`` its class, ``groups`` its clip. Whole clips are
    resampled with replacement (a clip scored in several runs is one unit); a resample's
    class-mean accuracy averages, over the classes it drew, the pooled accuracy of each class.
    """
    before = np.asarray(correct_before, dtype=np.float64).ravel()
    after = np.asarray(correct_after, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if not before.size == after.size == labels.size == np.asarray(groups).size:
        raise ValueError("outcomes, labels and groups must have one entry per outcome")
    if before.size == 0:
        raise ValueError("class_mean_bootstrap needs at least one outcome")
    group_ids = np.unique(np.asarray(groups).ravel(), return_inverse=True)[1]
    n_groups = int(group_ids.max()) + 1
    class_of = np.zeros(n_groups, dtype=np.int64)
    class_of[group_ids] = np.unique(labels, return_inverse=True)[1]
    n_classes = int(class_of.max()) + 1
    sums_b = np.bincount(group_ids, weights=before, minlength=n_groups)
    sums_a = np.bincount(group_ids, weights=after, minlength=n_groups)
    count = np.bincount(group_ids, minlength=n_groups).astype(np.float64)

    def diff(weights: np.ndarray) -> float:
        n = np.bincount(class_of, weights=weights * count, minlength=n_classes)
        b = np.bincount(class_of, weights=weights * sums_b, minlength=n_classes)
        a = np.bincount(class_of, weights=weights * sums_a, minlength=n_classes)
        present = n > 0
        return float(np.mean((a[present] - b[present]) / n[present]))

    rng = np.random.default_rng(seed)
    samples = np.array(
        [
            diff(
                np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups).astype(
                    np.float64
                )
            )
            for _ in range(n_resamples)
        ]
    )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    tail = min(np.sum(samples <= 0.0), np.sum(samples >= 0.0))
    return BootstrapResult(
        difference=diff(np.ones(n_groups)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_value=float(min(1.0, 2.0 * (tail + 1) / (n_resamples + 1))),
        n_resamples=n_resamples,
        n_units=n_groups,
        seed=seed,
    )


def two_stage_bootstrap(
    correct_before,
    correct_after,
    splits,
    clips,
    labels=None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapResult:
    """Two-stage bootstrap of the accuracy difference (after - before) over runs on splits.

    One outcome per (run, test clip): ``splits`` its split, ``clips`` its clip. Each resample
    draws splits with replacement and, once for all of them, the clips with replacement: an
    outcome's weight is how often its split was drawn times how often its clip was. A clip in
    the test parts of several splits (random splits overlap) is one piece of evidence, drawn
    once, not one per split; drawing each split's clips on their own counts it again in every
    split and gives intervals too narrow (simulated coverage 88-91 % for a nominal 95 % with
    runs that agree on most clips, 96-99 % with the joint draw: bench/bench_ci_coverage.py). The
    runs of one split, its training seeds, share both draws. So the interval holds the
    split-to-split spread as well as the clips' (a clip bootstrap alone holds the few splits
    fixed). With
    ``labels`` (the class of each outcome) the statistic is the class-mean accuracy difference
    instead: per class the pooled weighted accuracy, averaged over the classes drawn.
    ``difference`` is the same statistic on all outcomes once, so the point estimate and its
    interval come from one estimator. With one split, the first stage draws that split every
    time. A resample whose draws leave no outcome with weight is drawn again.
    """
    before = np.asarray(correct_before, dtype=np.float64).ravel()
    after = np.asarray(correct_after, dtype=np.float64).ravel()
    split_ids = np.unique(np.asarray(splits).ravel(), return_inverse=True)[1]
    clip_ids = np.asarray(clips).ravel()
    if not before.size == after.size == split_ids.size == clip_ids.size:
        raise ValueError("outcomes, splits and clips must have one entry per outcome")
    if before.size == 0:
        raise ValueError("two_stage_bootstrap needs at least one outcome")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    class_ids = None
    if labels is not None:
        class_ids = np.unique(np.asarray(labels).ravel(), return_inverse=True)[1]
        if class_ids.size != before.size:
            raise ValueError("labels must give one class per outcome")
    n_splits = int(split_ids.max()) + 1
    clip_index = np.unique(clip_ids, return_inverse=True)[1]
    n_clips = int(clip_index.max()) + 1

    def statistic(w: np.ndarray) -> float:
        if class_ids is None:
            return float((w * (after - before)).sum() / w.sum())
        n_c = np.bincount(class_ids, weights=w)
        d_c = np.bincount(class_ids, weights=w * (after - before))
        present = n_c > 0
        return float(np.mean(d_c[present] / n_c[present]))

    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    for r in range(n_resamples):
        while True:
            split_times = np.bincount(rng.integers(0, n_splits, n_splits), minlength=n_splits)
            clip_times = np.bincount(rng.integers(0, n_clips, n_clips), minlength=n_clips)
            w = (split_times[split_ids] * clip_times[clip_index]).astype(np.float64)
            if w.sum() > 0:
                break
        samples[r] = statistic(w)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    tail = min(np.sum(samples <= 0.0), np.sum(samples >= 0.0))
    return BootstrapResult(
        difference=statistic(np.ones(before.size)),
        ci_low=float(low),
        ci_high=float(high),
        confidence=confidence,
        p_value=float(min(1.0, 2.0 * (tail + 1) / (n_resamples + 1))),
        n_resamples=n_resamples,
        n_units=n_splits,
        seed=seed,
    )


__all__ = [
    "two_stage_bootstrap",
    "Spread",
    "mean_spread",
    "McNemarResult",
    "mcnemar",
    "mcnemar_from_counts",
    "BootstrapResult",
    "class_mean_accuracy",
    "class_mean_bootstrap",
    "paired_bootstrap",
]
