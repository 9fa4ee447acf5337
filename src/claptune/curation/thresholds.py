"""Thresholds as a raw cosine or as a quantile of the observed similarity distribution.

A raw cosine such as 0.75 means something different for every checkpoint (METHOD.md), so a
threshold can also be written ``"q0.99"``: keep what scores at or above the 99th percentile of
the scores it is compared with. Which distribution that is depends on the method: all
audio-text pairs (DU, ADS), each caption's best prompt cosine (DS), each clip's best
target-clip cosine (a2a), each clip's confidence (pseudo). Pairwise distributions of large
corpora are estimated from a seeded random sample of pairs (exact below the sample size);
per-item distributions are always exact.
"""

from __future__ import annotations

import numpy as np

from claptune.curation.search import exact_scores
from claptune.curation.settings import Threshold

PAIR_SAMPLE = 1_000_000  # random pairs that estimate a pairwise distribution
PERCENTILES = (1, 10, 50, 90, 99, 99.9, 99.99)


def pair_score_sample(
    query_emb: np.ndarray, key_emb: np.ndarray, size: int = PAIR_SAMPLE, seed: int = 0
) -> tuple[np.ndarray, bool]:
    """Exact scores of every pair when there are at most ``size``, else of ``size`` random
    pairs drawn with ``seed``. Returns (scores, exact)."""
    n, m = len(query_emb), len(key_emb)
    if n * m <= size:
        qi, ki = np.divmod(np.arange(n * m, dtype=np.int64), m)
        return exact_scores(query_emb, key_emb, qi, ki), True
    rng = np.random.default_rng(seed)
    qi, ki = rng.integers(0, n, size), rng.integers(0, m, size)
    return exact_scores(query_emb, key_emb, qi, ki), False


def describe(
    scores: np.ndarray,
    exact: bool = True,
    population: int | None = None,
    candidates: list[float] | None = None,
) -> dict:
    """Percentiles of ``scores`` and how many of the ``population`` (default: the scores
    themselves) each candidate threshold would keep (estimated when ``exact`` is False)."""
    population = len(scores) if population is None else population
    out: dict = {"n_scores": int(len(scores)), "exact": bool(exact), "population": int(population)}
    if len(scores) == 0:
        return out
    out["min"], out["max"], out["mean"] = (
        float(scores.min()),
        float(scores.max()),
        float(scores.mean()),
    )
    out["percentiles"] = {f"p{p:g}": float(np.percentile(scores, p)) for p in PERCENTILES}
    ladder = sorted(set((candidates or []) + list(out["percentiles"].values())))
    out["kept_at"] = {f"{t:.4f}": int(round(np.mean(scores >= t) * population)) for t in ladder}
    return out


def format_distribution(name: str, info: dict) -> str:
    """A few lines for the terminal: the percentiles and the kept-counts ladder."""
    if not info.get("n_scores"):
        return f"{name}: no scores"
    how = "exact" if info["exact"] else f"estimated from {info['n_scores']:,} sampled pairs"
    pct = "  ".join(f"{k}={v:.3f}" for k, v in info["percentiles"].items())
    lines = [
        f"{name} ({info['population']:,} scores, {how}): min={info['min']:.3f}  {pct}  "
        f"max={info['max']:.3f}"
    ]
    approx = "" if info["exact"] else "~"
    ladder = ", ".join(f">={t}: {approx}{n:,}" for t, n in info["kept_at"].items())
    lines.append(f"  kept by threshold: {ladder}")
    return "\n".join(lines)


__all__ = ["PAIR_SAMPLE", "Threshold", "describe", "format_distribution", "pair_score_sample"]
