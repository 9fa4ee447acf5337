"""claptune.stats against scipy and brute-force oracles."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
from scipy.stats import binomtest

from claptune.stats import mcnemar, mcnemar_from_counts, mean_spread, paired_bootstrap


def _brute_mcnemar(b: int, c: int) -> tuple[float, float]:
    """Two-sided exact and mid-p by summing the binomial(b + c, 1/2) pmf by hand."""
    n = b + c
    if n == 0:
        return 1.0, 1.0
    pmf = [comb(n, i) / 2**n for i in range(n + 1)]
    k = min(b, c)
    lower = sum(pmf[: k + 1])
    return min(1.0, 2 * lower), min(1.0, 2 * (lower - pmf[k] / 2))


@pytest.mark.parametrize("b,c", [(0, 0), (0, 5), (3, 3), (7, 2), (1, 12), (40, 61)])
def test_mcnemar_matches_brute_force_and_scipy(b, c):
    p_exact, p_midp = mcnemar_from_counts(b, c)
    want_exact, want_midp = _brute_mcnemar(b, c)
    assert p_exact == pytest.approx(want_exact, rel=1e-9)
    assert p_midp == pytest.approx(want_midp, rel=1e-9)
    if b + c:
        assert p_exact == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9)
    assert p_midp <= p_exact


def test_mcnemar_counts_cells(rng):
    before = rng.random(200) < 0.4
    after = rng.random(200) < 0.6
    res = mcnemar(before, after)
    assert res.only_before == int(np.sum(before & ~after))
    assert res.only_after == int(np.sum(~before & after))
    assert res.both_correct + res.both_wrong + res.only_before + res.only_after == 200
    assert (res.p_exact, res.p_midp) == mcnemar_from_counts(res.only_before, res.only_after)
    with pytest.raises(ValueError):
        mcnemar(before, after[:10])


def test_mean_spread():
    s = mean_spread([0.1, 0.2, 0.6])
    assert s.mean == pytest.approx(0.3)
    assert s.std == pytest.approx(np.std([0.1, 0.2, 0.6], ddof=1))
    assert s.sem == pytest.approx(s.std / np.sqrt(3))
    assert (s.min, s.max, s.n) == (0.1, 0.6, 3)
    assert mean_spread([0.5]).std == 0.0
    assert s.format() == "30.0 ± 26.5"
    assert (
        s.format(sign=True) == "+30.0 ± 26.5" and mean_spread([-0.02]).format(sign=True) == "-2.0"
    )
    assert mean_spread([0.5]).format() == "50.0"  # one value: no spread to show
    with pytest.raises(ValueError):
        mean_spread([])


def _exact_bootstrap_distribution(before, after):
    """Every one of the n^n equally likely resamples of n paired outcomes."""
    n = len(before)
    diffs = []
    for draw in itertools.product(range(n), repeat=n):
        idx = np.array(draw)
        diffs.append(after[idx].mean() - before[idx].mean())
    return np.array(diffs)


def test_paired_bootstrap_matches_exact_enumeration():
    before = np.array([1, 0, 0, 1, 0, 1], dtype=float)
    after = np.array([1, 1, 0, 1, 1, 0], dtype=float)
    exact = _exact_bootstrap_distribution(before, after)
    res = paired_bootstrap(before, after, n_resamples=40_000, seed=1)
    assert res.difference == pytest.approx(after.mean() - before.mean())
    lo, hi = np.quantile(exact, [0.025, 0.975])
    assert res.ci_low == pytest.approx(lo, abs=1 / 6 + 1e-9)  # quantiles move in steps of 1/n
    assert res.ci_high == pytest.approx(hi, abs=1 / 6 + 1e-9)
    exact_p = 2 * min(np.mean(exact <= 0), np.mean(exact >= 0))
    assert res.p_value == pytest.approx(exact_p, abs=0.02)


def test_paired_bootstrap_groups_resample_whole_clips(rng):
    # one clip scored in three runs with identical outcomes: a cluster bootstrap over the
    # clips must give the same distribution as a plain bootstrap over one copy of each clip
    before = (rng.random(30) < 0.3).astype(float)
    after = (rng.random(30) < 0.5).astype(float)
    tripled = paired_bootstrap(
        np.tile(before, 3),
        np.tile(after, 3),
        groups=np.tile(np.arange(30), 3),
        n_resamples=5000,
        seed=3,
    )
    single = paired_bootstrap(before, after, n_resamples=5000, seed=3)
    assert tripled.n_units == 30
    assert tripled.ci_low == pytest.approx(single.ci_low)
    assert tripled.ci_high == pytest.approx(single.ci_high)
    # without groups the copies look like independent evidence and the interval shrinks
    naive = paired_bootstrap(np.tile(before, 3), np.tile(after, 3), n_resamples=5000, seed=3)
    assert naive.ci_high - naive.ci_low < single.ci_high - single.ci_low


def test_paired_bootstrap_detects_clear_gain_and_no_gain(rng):
    before = (rng.random(300) < 0.3).astype(float)
    gain = paired_bootstrap(before, np.ones(300), n_resamples=2000)
    assert gain.ci_low > 0 and gain.p_value < 0.01
    same = paired_bootstrap(before, before, n_resamples=2000)
    assert same.difference == 0 and same.p_value == 1.0


def test_class_mean_accuracy_weights_classes_equally():
    from claptune.stats import class_mean_accuracy

    labels = np.array([0] * 8 + [1] * 2)
    pred = np.array([0] * 8 + [0] * 2)  # head class all right, tail class all wrong
    assert class_mean_accuracy(pred, labels) == 0.5
    assert np.mean(pred == labels) == 0.8


def test_class_mean_bootstrap_matches_brute_force_difference_and_resamples_clips():
    from claptune.stats import class_mean_accuracy, class_mean_bootstrap

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 60)
    before = rng.random(60) < 0.4
    after = rng.random(60) < 0.6
    res = class_mean_bootstrap(before, after, labels, np.arange(60), n_resamples=2000)
    expected = class_mean_accuracy(np.where(after, labels, -1), labels) - class_mean_accuracy(
        np.where(before, labels, -1), labels
    )
    assert np.isclose(res.difference, expected)
    assert res.ci_low <= res.difference <= res.ci_high and res.n_units == 60
    # two runs scoring the same clips: still 60 units, and the same point estimate
    twice = class_mean_bootstrap(
        np.r_[before, before],
        np.r_[after, after],
        np.r_[labels, labels],
        np.r_[np.arange(60), np.arange(60)],
        n_resamples=2000,
    )
    assert twice.n_units == 60 and np.isclose(twice.difference, res.difference)
    same = class_mean_bootstrap(before, before, labels, np.arange(60), n_resamples=500)
    assert same.difference == 0 and same.ci_low == same.ci_high == 0


def test_two_stage_bootstrap_point_and_spread():
    from claptune.stats import two_stage_bootstrap

    rng = np.random.default_rng(0)
    # 3 splits of 40 clips, 2 seeds each; split 2 gains nothing, the others gain a lot
    before, after, splits, clips, labels = [], [], [], [], []
    for s, gain in enumerate((0.3, 0.3, 0.0)):
        b = rng.random(40) < 0.4
        for _seed in range(2):
            a = b | (rng.random(40) < gain)
            before += b.tolist()
            after += a.tolist()
            splits += [s] * 40
            clips += list(range(s * 40, s * 40 + 40))
            labels += (np.arange(40) % 4).tolist()
    res = two_stage_bootstrap(before, after, splits, clips, n_resamples=400)
    assert res.difference == pytest.approx(np.mean(after) - np.mean(before))
    assert res.ci_low < res.difference < res.ci_high
    assert res.n_units == 3
    # the split stage widens the interval over the clip bootstrap of the same outcomes
    clip_only = paired_bootstrap(before, after, groups=clips, n_resamples=400)
    assert (res.ci_high - res.ci_low) > (clip_only.ci_high - clip_only.ci_low)
    # class-mean: the point estimate is the pooled class-mean difference
    cm = two_stage_bootstrap(before, after, splits, clips, labels=labels, n_resamples=200)
    lab, b, a = np.array(labels), np.array(before, float), np.array(after, float)
    expected = np.mean([a[lab == c].mean() - b[lab == c].mean() for c in range(4)])
    assert cm.difference == pytest.approx(expected)
    assert cm.ci_low <= cm.difference <= cm.ci_high


def test_two_stage_bootstrap_counts_a_clip_shared_by_splits_once():
    """Random splits' test parts overlap: a clip scored in three splits is one piece of
    evidence. With three splits that test the same clips with the same outcomes, the interval
    is as wide as one split's clip bootstrap, not sqrt(3) narrower (as it was when each split
    drew its clips on its own)."""
    from claptune.stats import two_stage_bootstrap

    rng = np.random.default_rng(1)
    before = rng.random(80) < 0.4
    after = before ^ (rng.random(80) < 0.3)
    one = two_stage_bootstrap(before, after, np.zeros(80), np.arange(80), n_resamples=3000)
    three = two_stage_bootstrap(
        np.tile(before, 3),
        np.tile(after, 3),
        np.repeat(np.arange(3), 80),
        np.tile(np.arange(80), 3),
        n_resamples=3000,
    )
    assert three.difference == pytest.approx(one.difference)
    width_one, width_three = one.ci_high - one.ci_low, three.ci_high - three.ci_low
    assert width_three == pytest.approx(width_one, rel=0.1)
