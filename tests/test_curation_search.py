"""Blocked threshold / top-k search against a brute-force NumPy oracle over the full matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from claptune.curation import threshold_pairs, topk_pairs
from claptune.errors import ClaptuneError


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted(rng: np.random.Generator, n_query: int = 70, n_key: int = 53, d: int = 16):
    """Random unit vectors plus planted structure: near-copies (high scores), exact duplicate
    keys (exact ties) and a duplicate query."""
    query, key = unit(rng, n_query, d), unit(rng, n_key, d)
    for qi, ki in [(0, 5), (3, 7), (10, 50), (69, 0)]:
        x = key[ki] + 0.05 * rng.standard_normal(d).astype(np.float32)
        query[qi] = x / np.linalg.norm(x)
    key[11] = key[12] = key[40] = key[7]  # ties for every query, including query 3's best
    query[20] = query[3]
    return query, key


def full_matrix(query: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The whole N x M cosine matrix in float64, product then sum along D."""
    return (query.astype(np.float64)[:, None, :] * key.astype(np.float64)[None, :, :]).sum(-1)


def oracle_threshold(query, key, threshold):
    s = full_matrix(query, key)
    out = [
        (i, j, s[i, j])
        for i in range(s.shape[0])
        for j in range(s.shape[1])
        if s[i, j] >= threshold
    ]
    out.sort(key=lambda t: (t[0], -t[2], t[1]))
    return out


def oracle_topk(query, key, k):
    s = full_matrix(query, key)
    out = []
    for i in range(s.shape[0]):
        ranked = sorted(range(s.shape[1]), key=lambda j: (-s[i, j], j))[:k]
        out.extend((i, j, s[i, j]) for j in ranked)
    return out


def as_list(t) -> list[tuple[int, int, float]]:
    return list(zip(t.query.tolist(), t.key.tolist(), t.score.tolist(), strict=True))


@pytest.mark.parametrize("block_size", [1, 7, 64, 4096])
@pytest.mark.parametrize("threshold", [-1.0, 0.3, 0.9])
def test_threshold_pairs_equals_oracle(rng, block_size, threshold):
    query, key = planted(rng)
    got = as_list(threshold_pairs(query, key, threshold, block_size=block_size))
    assert got == oracle_threshold(query, key, threshold)


@pytest.mark.parametrize("block_size", [1, 5, 64, 4096])
@pytest.mark.parametrize("k", [1, 3, 5, 60])
def test_topk_pairs_equals_oracle(rng, block_size, k):
    query, key = planted(rng)
    got = as_list(topk_pairs(query, key, k, block_size=block_size))
    assert got == oracle_topk(query, key, k)


def test_topk_ties_beyond_pad_are_resolved_exactly(rng):
    """20 identical keys tie for every query: more than the candidate pad can hold, so the
    certification must fall back to the exact row search and still pick the lowest indices."""
    query, key = unit(rng, 9, 8), unit(rng, 40, 8)
    key[10:30] = key[3]
    query[0] = key[3]
    got = topk_pairs(query, key, 4, block_size=6, pad=1)
    assert as_list(got) == oracle_topk(query, key, 4)
    assert got.key[:4].tolist() == [3, 10, 11, 12]


def test_planted_pairs_are_found(rng):
    query, key = planted(rng)
    best = topk_pairs(query, key, 1)
    assert best.key[[0, 10, 69]].tolist() == [5, 50, 0]
    assert best.key[3] == 7 and best.key[20] == 7  # the lowest of the tied duplicates


def test_accepts_torch_tensors(rng):
    query, key = planted(rng)
    a = topk_pairs(torch.from_numpy(query), torch.from_numpy(key), 2)
    b = topk_pairs(query, key, 2)
    assert as_list(a) == as_list(b)


def test_bad_inputs(rng):
    query, key = unit(rng, 4, 8), unit(rng, 5, 8)
    with pytest.raises(ClaptuneError, match="dimensions differ"):
        threshold_pairs(query, unit(rng, 5, 6), 0.5)
    with pytest.raises(ClaptuneError, match="empty"):
        topk_pairs(query, np.zeros((0, 8), np.float32), 2)
    with pytest.raises(ClaptuneError, match="empty"):
        threshold_pairs(np.zeros((0, 8), np.float32), key, 0.5)
    nan = query.copy()
    nan[2, 1] = np.nan
    with pytest.raises(ClaptuneError, match="NaN"):
        topk_pairs(nan, key, 1)
    with pytest.raises(ClaptuneError, match="L2-normalised"):
        threshold_pairs(query * 2, key, 0.5)
    with pytest.raises(ClaptuneError, match=r"\(N, D\)"):
        threshold_pairs(query[0], key, 0.5)
    with pytest.raises(ValueError):
        topk_pairs(query, key, 0)
    with pytest.raises(ValueError):
        threshold_pairs(query, key, float("nan"))


def test_threshold_that_keeps_nothing_returns_empty_triples(rng):
    query, key = unit(rng, 4, 8), unit(rng, 5, 8)
    assert len(threshold_pairs(query, key, 1.5)) == 0


def test_faiss_with_every_cell_probed_equals_exact(rng):
    pytest.importorskip("faiss")
    from claptune.curation.approx import approx_topk_pairs

    query, key = unit(rng, 200, 16), unit(rng, 600, 16)
    exact = topk_pairs(query, key, 3)
    assert as_list(approx_topk_pairs(query, key, 3, nlist=8, nprobe=8)) == as_list(exact)
    few = approx_topk_pairs(query, key, 3, nlist=8, nprobe=1)  # approximate, scores exact
    np.testing.assert_array_equal(few.score, full_matrix(query, key)[few.query, few.key])
