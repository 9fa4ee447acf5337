"""Label-free class priors (EM under label shift, Sinkhorn to a marginal), the split strategies
that do not hand the pool the true class shares, and the skewed-variant generator."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from claptune.curation.priors import em_prior, estimate_prior, sinkhorn, total_variation
from claptune.errors import ClaptuneError
from claptune.improve.splits import grouped_split, make_splits, random_split, resolve_strategy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _posteriors(prior: np.ndarray, n: int, sharpness: float, seed: int):
    """Clips drawn with class shares ``prior``; Bayes posteriors of a classifier calibrated for a
    uniform source prior (Gaussian class likelihoods of known scale)."""
    rng = np.random.default_rng(seed)
    c = len(prior)
    y = rng.choice(c, size=n, p=prior)
    means = np.eye(c) * sharpness
    x = means[y] + rng.normal(size=(n, c))
    logits = x @ means.T - 0.5 * (means**2).sum(1)  # log N(x; mu_c, I) up to a constant
    p = np.exp(logits - logits.max(1, keepdims=True))
    return y, p / p.sum(1, keepdims=True)


def test_em_recovers_a_skewed_prior_that_uniform_misses():
    true = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    y, p = _posteriors(true, 4000, sharpness=2.0, seed=0)
    empirical = np.bincount(y, minlength=5) / len(y)
    est = em_prior(p)
    assert total_variation(est, empirical) < 0.03
    assert total_variation(np.full(5, 0.2), empirical) > 0.3
    # the mean posterior (one EM step from uniform) is pulled towards uniform: EM goes further
    assert total_variation(est, empirical) < total_variation(p.mean(0), empirical)


def test_em_keeps_a_balanced_prior_balanced_and_strength_shrinks_to_uniform():
    y, p = _posteriors(np.full(4, 0.25), 2000, sharpness=2.0, seed=1)
    assert total_variation(em_prior(p), np.full(4, 0.25)) < 0.05
    _, q = _posteriors(np.array([0.7, 0.1, 0.1, 0.1]), 40, sharpness=2.0, seed=2)
    loose, tight = em_prior(q, strength=0.0), em_prior(q, strength=50.0)
    assert total_variation(tight, np.full(4, 0.25)) < total_variation(loose, np.full(4, 0.25))
    assert np.isclose(loose.sum(), 1) and np.isclose(tight.sum(), 1)


def test_estimate_prior_methods():
    _, p = _posteriors(np.array([0.6, 0.3, 0.1]), 300, 2.0, 3)
    assert np.allclose(estimate_prior(p, "uniform"), 1 / 3)
    assert np.allclose(estimate_prior(p, "em", strength=0.0), em_prior(p))
    with pytest.raises(ValueError):
        estimate_prior(p, "oracle")


def test_sinkhorn_meets_the_marginal_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=200)
    marginal = np.array([0.4, 0.3, 0.2, 0.1])
    q = sinkhorn(p, marginal, iterations=500)
    assert np.allclose(q.sum(1), 1)
    assert np.allclose(q.mean(0), marginal, atol=1e-3)
    assert np.allclose(sinkhorn(p).mean(0), 0.25, atol=1e-3)  # default: equal shares


def test_total_variation():
    assert total_variation([1, 0], [0, 1]) == 1.0
    assert total_variation([0.5, 0.5], [2, 2]) == 0.0  # normalised first
    with pytest.raises(ValueError):
        total_variation([1, 0], [1, 0, 0])


def test_random_split_is_blind_to_labels_and_seeded():
    s = random_split(100, 0.25, seed=5)
    assert len(s.test) == 25 and len(s.adapt) == 75 and s.strategy == "random"
    assert np.intersect1d(s.test, s.adapt).size == 0
    assert np.array_equal(random_split(100, 0.25, seed=5).test, s.test)
    # labels play no part: make_splits gives the same split for any labelling
    a = make_splits(np.zeros(100), 1, 0.25, 5, "random")[0]
    b = make_splits(np.arange(100) % 7, 1, 0.25, 5, "random")[0]
    assert np.array_equal(a.test, b.test) and np.array_equal(a.test, s.test)


def test_grouped_split_keeps_each_recording_on_one_side():
    groups = [f"rec{i // 3}" for i in range(60)] + [f"solo{i}" for i in range(10)]
    s = grouped_split(groups, 0.5, seed=2)
    test_groups = {groups[i] for i in s.test}
    adapt_groups = {groups[i] for i in s.adapt}
    assert not test_groups & adapt_groups
    assert abs(len(s.test) - 35) <= 3
    assert np.array_equal(grouped_split(groups, 0.5, seed=2).test, s.test)
    assert not np.array_equal(grouped_split(groups, 0.5, seed=3).test, s.test)
    # clip order does not change which recordings are drawn
    perm = np.random.default_rng(0).permutation(len(groups))
    t = grouped_split([groups[i] for i in perm], 0.5, seed=2)
    assert sorted(groups[perm[i]] for i in t.test) == sorted(groups[i] for i in s.test)


def test_split_strategy_resolution():
    assert resolve_strategy("auto", ["a", "b"]) == "grouped"
    assert resolve_strategy("auto", None) == "random"
    with pytest.raises(ClaptuneError):
        resolve_strategy("grouped", None)
    with pytest.raises(ClaptuneError):
        resolve_strategy("by_label", None)
    splits = make_splits(np.zeros(20), 2, 0.5, 0, "grouped", [str(i // 2) for i in range(20)])
    assert [s.strategy for s in splits] == ["grouped", "grouped"]
    assert splits[0].to_dict()["strategy"] == "grouped"


def _fake_esc50(root: Path, per_class: int = 8, n_classes: int = 10) -> None:
    (root / "meta").mkdir(parents=True)
    (root / "audio").mkdir()
    with (root / "meta" / "esc50.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        for c in range(n_classes):
            for k in range(per_class):
                name = f"1-{c}{k}-A-{c}.wav"
                (root / "audio" / name).write_bytes(b"")
                w.writerow([name, 1, c, f"class{c}", False, f"{c}{k}", "A"])


def test_make_skewed_writes_long_tailed_variants_and_controls(tmp_path):
    from make_skewed import class_quota, make_variants

    q = class_quota(50, 8, 10)
    assert q[0] == 8 and q[-1] == 1 and np.all(np.diff(q) <= 0)
    _fake_esc50(tmp_path / "src")
    variants = make_variants(tmp_path / "src", tmp_path / "out", [1, 10], [0, 1])
    names = [v["name"] for v in variants]
    assert names == ["r1-o0", "r1-o1", "r10-o0", "r10-o0-control", "r10-o1", "r10-o1-control"]
    by = {v["name"]: v for v in variants}
    assert by["r1-o0"]["realised_ratio"] == 1.0 and by["r1-o0"]["n_clips"] == 80
    assert by["r10-o0"]["head"] == 8 and by["r10-o0"]["tail"] == 1
    assert by["r10-o0-control"]["n_clips"] == by["r10-o0"]["n_clips"]
    assert by["r10-o0-control"]["head"] - by["r10-o0-control"]["tail"] <= 1
    # another order seed puts other classes at the head
    assert by["r10-o0"]["class_sizes"] != by["r10-o1"]["class_sizes"]
    from claptune.data import load_dataset

    ds = load_dataset("esc50", root=str(tmp_path / "out" / "r10-o0"))
    assert len(ds.items) == by["r10-o0"]["n_clips"] and ds.groups is not None
    assert all(Path(p).is_symlink() for p in ds.items)
