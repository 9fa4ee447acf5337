"""Exact blocked similarity search: every (query, key) pair above a threshold, or the top k keys
of every query, without ever holding the full N x M similarity matrix.

Both searches stream (block_size x block_size) tiles of cosine similarities through
``torch.matmul`` in float32 and keep only what a running filter lets through: a threshold mask,
or a running top-(k + pad) per query that is merged tile by tile. Memory is bounded by the
tile and the output, whatever N and M are.

Scores are *exact*: the float32 tiles only select candidates, with a safety margin larger
than the worst-case float32 rounding error of a D-dimensional dot product of unit vectors;
the survivors are then rescored in float64 (an elementwise product summed along the
embedding axis, the same formula a brute-force NumPy computation uses) and the final
selection is made on those scores. A top-k row whose (k + pad) candidates cannot certify
the k-th place (near-ties, e.g. duplicated keys) is searched again with 4x as many candidates,
together with the other such rows, until certified. The result therefore equals the
brute-force selection bit for bit, ties included: triples are sorted by query, then by
descending score, then by key index.

Under ``torchrun`` (``distributed=True`` with an initialised process group) each rank searches
a contiguous slice of the queries and every rank receives the merged result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from claptune.curation.settings import DEFAULT_BLOCK_SIZE
from claptune.errors import ClaptuneError

RESCORE_ROWS = 512  # top-k queries rescored in float64 at once (bounds the gathered copy)
RESCORE_PAIRS = 16384  # threshold survivors rescored at once
MERGE_EVERY = 32  # per-tile top-k candidate sets pending before they are merged
_UNIT = 2.0**-24  # float32 unit roundoff


@dataclass(frozen=True)
class Triples:
    """(query index, key index, score) triples, sorted by query, descending score, key index."""

    query: np.ndarray  # (P,) int64 rows of query_emb
    key: np.ndarray  # (P,) int64 rows of key_emb
    score: np.ndarray  # (P,) float64 exact cosine of the pair

    def __len__(self) -> int:
        return len(self.query)

    @staticmethod
    def empty() -> Triples:
        return Triples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))

    @staticmethod
    def concat(parts: list[Triples]) -> Triples:
        if not parts:
            return Triples.empty()
        return Triples(
            np.concatenate([p.query for p in parts]),
            np.concatenate([p.key for p in parts]),
            np.concatenate([p.score for p in parts]),
        )


def as_embeddings(name: str, emb: np.ndarray | torch.Tensor) -> np.ndarray:
    """Check one embedding matrix and return it as C-contiguous float32 (no copy if it is one).

    Raises ``ClaptuneError`` for a wrong shape, no rows, non-finite values or rows that are not
    L2-normalised (cosine similarity is the dot product only for unit vectors).
    """
    if isinstance(emb, torch.Tensor):
        emb = emb.detach().cpu().numpy()
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ClaptuneError(f"{name} must be a (N, D) matrix, got shape {emb.shape}")
    if emb.shape[0] == 0:
        raise ClaptuneError(f"{name} is empty (0 rows): nothing to search")
    if emb.shape[1] == 0:
        raise ClaptuneError(f"{name} has 0 dimensions")
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ClaptuneError(f"{name} has NaN/inf values in {len(bad)} row(s), first row {bad[0]}")
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    off = np.abs(norms - 1.0) > 1e-3
    if off.any():
        bad = np.flatnonzero(off)
        raise ClaptuneError(
            f"{name} is not L2-normalised: {len(bad)} row(s), e.g. row {bad[0]} "
            f"has norm {norms[bad[0]]:.4f}"
        )
    return emb


def check_pair(
    query_emb, key_emb, query_name: str = "query_emb", key_name: str = "key_emb"
) -> tuple[np.ndarray, np.ndarray]:
    """Both matrices checked by ``as_embeddings`` and of the same dimension."""
    q = as_embeddings(query_name, query_emb)
    k = as_embeddings(key_name, key_emb)
    if q.shape[1] != k.shape[1]:
        raise ClaptuneError(
            f"embedding dimensions differ: {query_name} is {q.shape[1]}-d, "
            f"{key_name} is {k.shape[1]}-d (embedded by different models?)"
        )
    return q, k


def exact_scores(
    query_emb: np.ndarray, key_emb: np.ndarray, query_idx: np.ndarray, key_idx: np.ndarray
) -> np.ndarray:
    """float64 cosines of the pairs (query_idx[i], key_idx[...]) by product-then-sum.

    ``key_idx`` is (P,) or (P, c); the result has its shape. This is the scoring formula of the
    brute-force oracle, so both agree bit for bit.
    """
    if key_idx.ndim == 2:
        q = query_emb[query_idx].astype(np.float64)[:, None, :]
        return (q * key_emb[key_idx].astype(np.float64)).sum(axis=-1)
    out = np.empty(len(query_idx), np.float64)
    for p0, p1 in _blocks(len(query_idx), RESCORE_PAIRS):
        q = query_emb[query_idx[p0:p1]].astype(np.float64)
        out[p0:p1] = (q * key_emb[key_idx[p0:p1]].astype(np.float64)).sum(axis=-1)
    return out


def _margin(query_emb: np.ndarray, key_emb: np.ndarray) -> float:
    # Worst-case float32 dot-product error is about D * u * |q| * |k| (any summation order);
    # twice that, so a pair the float32 tile rejects can never reach the exact threshold.
    return 2.0 * query_emb.shape[1] * _UNIT * 1.001**2 + 1e-7


class _TileBuffer:
    """One reused (block_size x block_size) float32 buffer for the similarity tiles: no
    allocation (and no fresh pages to fault in) per tile."""

    def __init__(self, block_size: int, device: torch.device):
        self.block_size = block_size
        self.device = device
        self.flat: torch.Tensor | None = None

    def matmul(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """(q, D) x (k, D) -> (q, k) cosines, written into the buffer."""
        if self.flat is None:
            self.flat = torch.empty(self.block_size**2, dtype=torch.float32, device=self.device)
        out = self.flat[: len(query) * len(key)].view(len(query), len(key))
        return torch.matmul(query, key.T, out=out)


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _progress(blocks: Iterator, n: int, size: int, progress: bool) -> Iterator:
    """``blocks`` with a bar counting query rows, when asked and there is more than one block."""
    from tqdm.auto import tqdm

    total = -(-n // size)
    with tqdm(
        total=n, desc="curation search", unit="row", disable=not progress or total < 2
    ) as bar:
        for q0, q1 in blocks:
            yield q0, q1
            bar.update(q1 - q0)


def _check_block_size(block_size: int) -> None:
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")


def _query_slice(n: int, distributed: bool) -> tuple[int, int]:
    """The contiguous slice of queries this rank searches (all of them without torchrun)."""
    if not distributed or not torch.distributed.is_initialized():
        return 0, n
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    per = -(-n // world)
    return min(rank * per, n), min((rank + 1) * per, n)


def _gather(part: Triples, distributed: bool) -> Triples:
    """Every rank's slice, in rank order (= query order), on every rank."""
    if not distributed or not torch.distributed.is_initialized():
        return part
    parts: list[Triples | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, part)
    return Triples.concat([p for p in parts if p is not None])


def _sort(query: np.ndarray, key: np.ndarray, score: np.ndarray) -> Triples:
    order = np.lexsort((key, -score, query))
    return Triples(query[order].astype(np.int64), key[order].astype(np.int64), score[order])


def threshold_pairs(
    query_emb,
    key_emb,
    threshold: float,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    distributed: bool = False,
    progress: bool = False,
) -> Triples:
    """Every (query, key) pair whose cosine is >= ``threshold`` (``progress``: a bar over the
    blocks of queries when there are several).

    ``query_emb`` (N, D) and ``key_emb`` (M, D): L2-normalised float embeddings (NumPy or
    torch). Returns the pairs as ``Triples`` sorted by query, descending score, key index.
    """
    _check_block_size(block_size)
    q, k = check_pair(query_emb, key_emb)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}")
    lo, hi = _query_slice(len(q), distributed)
    margin = _margin(q, k)
    q_t, k_t = torch.from_numpy(q).to(device), torch.from_numpy(k).to(device)
    tiles = _TileBuffer(block_size, q_t.device)
    parts = []
    with torch.inference_mode():
        for q0, q1 in _progress(_blocks(hi - lo, block_size), hi - lo, block_size, progress):
            q0, q1 = q0 + lo, q1 + lo
            for k0, k1 in _blocks(len(k), block_size):
                tile = tiles.matmul(q_t[q0:q1], k_t[k0:k1])
                # Rows whose maximum misses the threshold are most rows at useful thresholds:
                # one row-max pass spares the full-tile mask for them.
                hot = torch.nonzero(tile.amax(dim=1) >= threshold - margin).squeeze(1)
                if len(hot) == 0:
                    continue
                if 2 * len(hot) < len(tile):
                    rows, cols = torch.nonzero(tile[hot] >= threshold - margin, as_tuple=True)
                    rows = hot[rows]
                else:
                    rows, cols = torch.nonzero(tile >= threshold - margin, as_tuple=True)
                qi = rows.cpu().numpy().astype(np.int64) + q0
                ki = cols.cpu().numpy().astype(np.int64) + k0
                score = exact_scores(q, k, qi, ki)
                keep = score >= threshold
                parts.append(Triples(qi[keep], ki[keep], score[keep]))
    found = Triples.concat(parts)
    return _gather(_sort(found.query, found.key, found.score), distributed)


def topk_pairs(
    query_emb,
    key_emb,
    k: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
    device: str | torch.device | None = None,
    distributed: bool = False,
    pad: int = 2,
    progress: bool = False,
) -> Triples:
    """The ``k`` keys of highest cosine for every query (all keys when there are fewer).

    Ties at the k-th score go to the lower key index. Each query keeps ``k + pad`` float32
    candidates; rows whose candidates cannot certify the exact top k (near-ties, duplicated
    keys) are searched again together with 4x as many, until certified. Returns ``Triples``
    with min(k, M) entries per query, sorted as documented.
    """
    _check_block_size(block_size)
    if k < 1 or pad < 0:
        raise ValueError(f"k must be >= 1 and pad >= 0, got k={k}, pad={pad}")
    q, keys = check_pair(query_emb, key_emb)
    k = min(k, len(keys))
    lo, hi = _query_slice(len(q), distributed)
    search = _TopkSearch(q, keys, k, block_size, device)
    parts = []
    with torch.inference_mode():
        for q0, q1 in _progress(_blocks(hi - lo, block_size), hi - lo, block_size, progress):
            rows = np.arange(q0 + lo, q1 + lo)
            key, score = search.rows(rows, k + pad)
            parts.append(Triples(np.repeat(rows, k), key.ravel(), score.ravel()))
    return _gather(Triples.concat(parts), distributed)


class _TopkSearch:
    """The top-k search of a block of query rows, with certified exact results."""

    def __init__(self, q: np.ndarray, keys: np.ndarray, k: int, block_size: int, device):
        self.q, self.keys, self.k, self.block_size = q, keys, k, block_size
        self.margin = _margin(q, keys)
        self.q_t = torch.from_numpy(q).to(device)
        self.k_t = torch.from_numpy(keys).to(device)
        self.tiles = _TileBuffer(block_size, self.q_t.device)

    def rows(self, rows: np.ndarray, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, exact scores), each (len(rows), k), of the query rows ``rows``."""
        n_keys = len(self.keys)
        n_cand = min(n_cand, n_keys)
        query = self.q_t[torch.from_numpy(rows).to(self.q_t.device)]
        vals: list[torch.Tensor] = []
        idxs: list[torch.Tensor] = []
        for k0, k1 in _blocks(n_keys, self.block_size):
            tile = self.tiles.matmul(query, self.k_t[k0:k1])
            val, idx = torch.topk(tile, min(n_cand, k1 - k0), dim=1, sorted=False)
            vals.append(val)
            idxs.append(idx + k0)
            if len(vals) == MERGE_EVERY:  # bound the pending candidates whatever M is
                val, idx = _merge(vals, idxs, n_cand)
                vals, idxs = [val], [idx]
        val, idx = _merge(vals, idxs, n_cand)
        cand_f32 = val.cpu().numpy()
        cand_idx = idx.cpu().numpy().astype(np.int64)
        key, score, unsure = _select_topk(
            self.q, self.keys, rows, cand_f32, cand_idx, self.k, self.margin
        )
        if len(unsure):
            key[unsure], score[unsure] = self.rows(rows[unsure], 4 * n_cand)
        return key, score


def _merge(
    vals: list[torch.Tensor], idxs: list[torch.Tensor], n_cand: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_cand`` best of the pending per-tile candidates, sorted by descending float32."""
    val, idx = torch.cat(vals, 1), torch.cat(idxs, 1)
    val, pos = torch.topk(val, min(n_cand, val.shape[1]), dim=1, sorted=True)
    return val, torch.gather(idx, 1, pos)


def _select_topk(
    q: np.ndarray,
    keys: np.ndarray,
    rows: np.ndarray,
    cand_f32: np.ndarray,
    cand_idx: np.ndarray,
    k: int,
    margin: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rescore the candidates of query ``rows`` exactly and pick the top k: (keys, scores,
    positions of the rows whose candidates cannot prove they hold the true top k).

    ``cand_f32`` is sorted descending per row. Only candidates within 2 margins of the k-th
    float32 score are rescored: with |float32 - exact| <= margin / 2, anything below that band
    is exactly below the k best of the band, so the exact top k lies inside it.
    """
    n_rows, n_cand = cand_idx.shape
    band = (cand_f32 >= cand_f32[:, k - 1 : k] - 2 * margin).sum(axis=1)
    width = int(band.max())
    out_key = np.empty((n_rows, k), np.int64)
    out_score = np.empty((n_rows, k), np.float64)
    for r0, r1 in _blocks(n_rows, RESCORE_ROWS):
        idx = cand_idx[r0:r1, :width]
        score = exact_scores(q, keys, rows[r0:r1], idx)
        score[np.arange(width)[None, :] >= band[r0:r1, None]] = -np.inf
        order = np.lexsort((idx, -score), axis=-1)[:, :k]
        out_key[r0:r1] = np.take_along_axis(idx, order, 1)
        out_score[r0:r1] = np.take_along_axis(score, order, 1)
    unsure = np.zeros(0, np.int64)
    if n_cand < len(keys):
        # A band holding every candidate proves nothing about the keys dropped earlier: they
        # scored <= the lowest candidate in float32; if that is within the margin of the exact
        # k-th score, a dropped key might tie or beat it.
        unsure = np.flatnonzero((band == n_cand) & (cand_f32[:, -1] >= out_score[:, -1] - margin))
    return out_key, out_score, unsure


__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "Triples",
    "as_embeddings",
    "check_pair",
    "exact_scores",
    "threshold_pairs",
    "topk_pairs",
]
