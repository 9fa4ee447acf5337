"""Approximate top-k search with faiss (``pip install claptune[faiss]``), for corpora where the
exact blocked search is too slow.

An inverted-file index (``IndexIVFFlat``, inner product = cosine for unit vectors) clusters the
keys into ``nlist`` cells and searches only the ``nprobe`` cells nearest each query, so some
true neighbours are missed: bench/bench_curation.py measures the recall against the exact
search. The pairs found are rescored exactly (float64) and sorted like ``topk_pairs``, so
only *which* keys are found is approximate, never their scores or order.
"""

from __future__ import annotations

import numpy as np

from claptune.curation.search import Triples, check_pair, exact_scores
from claptune.errors import ClaptuneError


def approx_topk_pairs(
    query_emb, key_emb, k: int, nlist: int = 1024, nprobe: int = 16, seed: int = 0
) -> Triples:
    """Up to ``k`` keys per query found by a faiss IVF index; fewer where the probed cells
    hold fewer keys. Same ``Triples`` layout as ``topk_pairs``."""
    try:
        import faiss
    except ImportError:
        raise ClaptuneError("approximate search needs faiss: pip install faiss-cpu") from None
    if k < 1 or nlist < 1 or nprobe < 1:
        raise ValueError("k, nlist and nprobe must be >= 1")
    q, keys = check_pair(query_emb, key_emb)
    k = min(k, len(keys))
    nlist = min(nlist, len(keys))
    quantizer = faiss.IndexFlatIP(keys.shape[1])
    index = faiss.IndexIVFFlat(quantizer, keys.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed  # k-means initialisation: the same index on every run
    index.train(keys)
    index.add(keys)
    index.nprobe = min(nprobe, nlist)
    _, found = index.search(q, k)
    rows, cols = np.nonzero(found >= 0)  # faiss marks missing neighbours with -1
    qi, ki = rows.astype(np.int64), found[rows, cols].astype(np.int64)
    score = exact_scores(q, keys, qi, ki)
    order = np.lexsort((ki, -score, qi))
    return Triples(qi[order], ki[order], score[order])


__all__ = ["approx_topk_pairs"]
