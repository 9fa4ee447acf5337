"""DU, domain-unspecific curation: unpaired clips paired with unpaired captions by audio-text
cosine, many-to-many above a threshold (paper: 0.75) or the top k captions per clip (paper
variant: k = 5). Score = the audio-text cosine; class = ""."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from claptune.curation.common import check_ids, warn_if_empty
from claptune.curation.methods import PAPER_THRESHOLDS
from claptune.curation.pairs import MethodMeta, Pairs
from claptune.curation.search import (
    Triples,
    as_embeddings,
    check_pair,
    exact_scores,
    threshold_pairs,
    topk_pairs,
)
from claptune.curation.settings import DEFAULT_SEARCH, SearchOptions, Threshold
from claptune.curation.thresholds import PAIR_SAMPLE, describe, pair_score_sample

DU_THRESHOLD = PAPER_THRESHOLDS["du"]  # the paper's cosine (claptune.curation.methods)
DU_TOP_K = 5


def domain_unspecific(
    audio_ids: Sequence[str],
    audio_emb: np.ndarray,
    texts: Sequence[str],
    text_emb: np.ndarray,
    threshold: float | str | Threshold | None = None,
    top_k: int | None = None,
    options: SearchOptions = DEFAULT_SEARCH,
) -> Pairs:
    """Pairs (clip, caption) with cosine >= ``threshold`` (default 0.75 when ``top_k`` is None),
    or the ``top_k`` captions of every clip, optionally also >= ``threshold``.

    ``audio_emb`` (N, D) and ``text_emb`` (M, D) are the teacher's L2-normalised embeddings of
    ``audio_ids`` and ``texts``. Rows are ordered by clip, then descending score. ``audio_emb``
    may also be a block source (``EmbeddingBlocks``, e.g. a sharded store); ``audio_ids`` are
    then ignored and the pool is streamed (``domain_unspecific_blocks``).
    """
    if hasattr(audio_emb, "blocks"):
        return domain_unspecific_blocks(audio_emb, texts, text_emb, threshold, top_k, options)
    audio_emb, text_emb = check_pair(audio_emb, text_emb, "audio_emb", "text_emb")
    audio_ids = check_ids("audio ids", audio_ids, len(audio_emb))
    texts = check_ids("texts", texts, len(text_emb))
    if top_k is None and threshold is None:
        threshold = DU_THRESHOLD
    sample, exact = pair_score_sample(audio_emb, text_emb)
    meta = MethodMeta(
        method="du",
        n_audio=len(audio_ids),
        n_text=len(texts),
        distribution=describe(
            sample, exact, len(audio_emb) * len(text_emb), candidates=[DU_THRESHOLD]
        ),
    )
    value = None
    if threshold is not None:
        threshold = Threshold.parse(threshold)
        value = threshold.resolve(sample)
        meta.update(threshold=str(threshold), threshold_value=value)
    if top_k is not None:
        found = topk_pairs(audio_emb, text_emb, top_k, **options.kwargs())
        meta["top_k"] = top_k
        if value is not None:
            keep = found.score >= value
            found = Triples(found.query[keep], found.key[keep], found.score[keep])
    else:
        found = threshold_pairs(audio_emb, text_emb, value, **options.kwargs())
    if value is not None:
        warn_if_empty(len(found), "du", value, meta["distribution"]["max"])
    return Pairs.build(
        [audio_ids[i] for i in found.query],
        [texts[j] for j in found.key],
        found.score,
        "du",
        meta=meta,
    )


class EmbeddingBlocks(Protocol):
    """A pool too large to hold: its length and its (ids, (n, D) vectors) blocks, in order."""

    def __len__(self) -> int: ...

    def blocks(self) -> Iterator[tuple[list[str], np.ndarray]]: ...


def domain_unspecific_blocks(
    audio: EmbeddingBlocks,
    texts: Sequence[str],
    text_emb: np.ndarray,
    threshold: float | str | Threshold | None = None,
    top_k: int | None = None,
    options: SearchOptions = DEFAULT_SEARCH,
) -> Pairs:
    """``domain_unspecific`` with the clips streamed in blocks: the same pairs, the same score
    distribution (the same sampled pairs, gathered block by block), while only one block of
    clip vectors is held at a time. Reads the blocks twice (sample, then search)."""
    text_emb = as_embeddings("text_emb", text_emb)
    texts = check_ids("texts", texts, len(text_emb))
    n, m = len(audio), len(text_emb)
    if top_k is None and threshold is None:
        threshold = DU_THRESHOLD
    sample, exact = _streamed_sample(audio, text_emb, n)
    meta = MethodMeta(
        method="du",
        n_audio=n,
        n_text=m,
        distribution=describe(sample, exact, n * m, candidates=[DU_THRESHOLD]),
    )
    value = None
    if threshold is not None:
        threshold = Threshold.parse(threshold)
        value = threshold.resolve(sample)
        meta.update(threshold=str(threshold), threshold_value=value)
    if top_k is not None:
        meta["top_k"] = top_k
    clips: list[str] = []
    captions: list[str] = []
    scores: list[np.ndarray] = []
    for ids, emb in audio.blocks():
        emb, _ = check_pair(emb, text_emb, "audio_emb", "text_emb")
        if top_k is not None:
            found = topk_pairs(emb, text_emb, top_k, **options.kwargs())
            if value is not None:
                keep = found.score >= value
                found = Triples(found.query[keep], found.key[keep], found.score[keep])
        else:
            found = threshold_pairs(emb, text_emb, value, **options.kwargs())
        clips += [ids[i] for i in found.query]
        captions += [texts[j] for j in found.key]
        scores.append(found.score)
    if value is not None:
        warn_if_empty(len(clips), "du", value, meta["distribution"]["max"])
    score = np.concatenate(scores) if scores else np.zeros(0)
    return Pairs.build(clips, captions, score, "du", meta=meta)


def _streamed_sample(
    audio: EmbeddingBlocks, text_emb: np.ndarray, n: int
) -> tuple[np.ndarray, bool]:
    """``pair_score_sample`` over a streamed pool: the pairs it would draw, scored per block."""
    m = len(text_emb)
    if n * m <= PAIR_SAMPLE:
        parts = []
        for _, emb in audio.blocks():
            qi, ki = np.divmod(np.arange(len(emb) * m, dtype=np.int64), m)
            parts.append(exact_scores(as_embeddings("audio_emb", emb), text_emb, qi, ki))
        return (np.concatenate(parts) if parts else np.zeros(0)), True
    rng = np.random.default_rng(0)  # pair_score_sample's seed and draws
    qi, ki = rng.integers(0, n, PAIR_SAMPLE), rng.integers(0, m, PAIR_SAMPLE)
    out = np.empty(PAIR_SAMPLE, np.float64)
    start = 0
    for _, emb in audio.blocks():
        here = (qi >= start) & (qi < start + len(emb))
        out[here] = exact_scores(
            as_embeddings("audio_emb", emb), text_emb, qi[here] - start, ki[here]
        )
        start += len(emb)
    return out, False


__all__ = [
    "DU_THRESHOLD",
    "DU_TOP_K",
    "EmbeddingBlocks",
    "domain_unspecific",
    "domain_unspecific_blocks",
]
