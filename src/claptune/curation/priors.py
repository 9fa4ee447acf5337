"""Class priors of an unlabeled target pool, estimated without labels.

A zero-shot classifier's probabilities p(y | x) carry two kinds of class bias: the model's own
(some prompts attract more audio than others, whatever the pool holds) and the pool's real class
shares (a street recording holds more engines than sirens). Balancing the pseudo-labels of a
pool to a *uniform* marginal (Sinkhorn-Knopp, ``balance``) removes both, which is right only for
a class-balanced pool. Here the pool's class shares are estimated first, then the labels are
balanced to them:

- ``em``: the EM re-estimation of priors under label shift (Saerens, Latinne and Decaestecker,
  2002, "Adjusting the outputs of a classifier to new a priori probabilities: a simple
  procedure", Neural Computation 14(1)): with the classifier's probabilities taken as calibrated
  for a uniform source prior, alternate posteriors reweighted by the current prior and the prior
  set to the mean posterior, to the maximum-likelihood prior of the pool. ``strength`` adds a
  symmetric Dirichlet prior (MAP-EM: ``strength`` x C pseudo-clips spread evenly), which keeps a
  class the pool barely shows from collapsing to zero on a small pool.
- ``uniform``: every class an equal share (the transductive prior of a balanced task).

OTTER (Shin et al., NeurIPS 2024, "OTTER: Effortless label distribution adaptation of zero-shot
models") showed that optimal transport of zero-shot predictions to the task's label distribution
fixes the model's label bias and that an *estimated* distribution (they use BBSE with labelled
source data) keeps most of the gain; we estimate it from the unlabeled pool alone.

The estimate is reported against the true class shares (total variation distance) only when a
run scores a labelled target; it is never computed from labels.
"""

from __future__ import annotations

import numpy as np

from claptune.curation.settings import DEFAULT_PRIOR_STRENGTH, PRIORS


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance between two distributions over the same classes (0 = equal, 1 =
    disjoint)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions of different shapes {p.shape} and {q.shape}")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def em_prior(
    probs: np.ndarray,
    strength: float = 0.0,
    iterations: int = 1000,
    tol: float = 1e-10,
    source_prior: np.ndarray | None = None,
) -> np.ndarray:
    """(C,) maximum-likelihood (``strength`` 0) or MAP class prior of the pool whose posteriors
    under ``source_prior`` (default uniform) are ``probs`` (N, C)."""
    p = np.asarray(probs, np.float64)
    n, c = p.shape
    if n == 0:
        return np.full(c, 1.0 / c)
    source = np.full(c, 1.0 / c) if source_prior is None else np.asarray(source_prior, np.float64)
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    prior = source.copy()
    for _ in range(iterations):
        w = p * (prior / source)
        w /= w.sum(axis=1, keepdims=True)
        # MAP update under a symmetric Dirichlet(1 + strength) prior on the class shares
        new = (w.sum(axis=0) + strength) / (n + strength * c)
        if np.abs(new - prior).max() < tol:
            prior = new
            break
        prior = new
    return prior / prior.sum()


def estimate_prior(
    probs: np.ndarray, method: str = "em", strength: float = DEFAULT_PRIOR_STRENGTH
) -> np.ndarray:
    """(C,) class shares of the pool with posteriors ``probs`` (N, C) by ``method``."""
    if method not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {method!r}")
    c = probs.shape[1]
    if method == "uniform":
        return np.full(c, 1.0 / c)
    return em_prior(probs, strength=strength)


def sinkhorn(
    probs: np.ndarray, marginal: np.ndarray | None = None, iterations: int = 100, tol: float = 1e-9
) -> np.ndarray:
    """Sinkhorn-Knopp: rescale rows and columns until class c holds ``marginal[c]`` of the total
    mass (default: an equal share) and every clip's row sums to 1; the row-normalised result."""
    q = np.clip(np.asarray(probs, np.float64), 1e-300, None)
    n, c = q.shape
    target = np.full(c, 1.0 / c) if marginal is None else np.asarray(marginal, np.float64)
    target = n * np.clip(target, 1e-12, None) / target.sum()
    for _ in range(iterations):
        q *= target / q.sum(axis=0, keepdims=True)
        rows = q.sum(axis=1, keepdims=True)
        q /= rows
        if np.abs(rows - 1).max() < tol:
            break
    return q / q.sum(axis=1, keepdims=True)


__all__ = [
    "DEFAULT_PRIOR_STRENGTH",
    "PRIORS",
    "em_prior",
    "estimate_prior",
    "sinkhorn",
    "total_variation",
]
