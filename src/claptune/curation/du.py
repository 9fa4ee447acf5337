"""DU, domain-unspecific curation: unpaired clips paired with unpaired captions by audio-text
cosine, many-to-many above a threshold (paper: 0.75) or the top k captions per clip (paper
variant: k = 5). Score = the audio-text cosine; class = ""."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from claptune.curation.common import DEFAULT_SEARCH, SearchOptions, check_ids, warn_if_empty
from claptune.curation.methods import PAPER_THRESHOLDS
from claptune.curation.pairs import Pairs
from claptune.curation.search import Triples, check_pair, threshold_pairs, topk_pairs
from claptune.curation.thresholds import Threshold, describe, pair_score_sample

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
    ``audio_ids`` and ``texts``. Rows are ordered by clip, then descending score.
    """
    audio_emb, text_emb = check_pair(audio_emb, text_emb, "audio_emb", "text_emb")
    audio_ids = check_ids("audio ids", audio_ids, len(audio_emb))
    texts = check_ids("texts", texts, len(text_emb))
    if top_k is None and threshold is None:
        threshold = DU_THRESHOLD
    sample, exact = pair_score_sample(audio_emb, text_emb)
    meta = {"method": "du", "n_audio": len(audio_ids), "n_text": len(texts),
            "distribution": describe(sample, exact, len(audio_emb) * len(text_emb),
                                     candidates=[DU_THRESHOLD])}
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
    return Pairs.build([audio_ids[i] for i in found.query], [texts[j] for j in found.key],
                       found.score, "du", meta=meta)


__all__ = ["DU_THRESHOLD", "DU_TOP_K", "domain_unspecific"]
