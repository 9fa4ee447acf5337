"""a2a curation: keep the unpaired clips whose best audio-audio cosine to the unlabeled
target-domain clips reaches a threshold (paper: 0.7 ESC-50, 0.875 UrbanSound8K, 0.7 TUT2017),
then pair each kept clip with DS captions.

The published code (retrieve_ds_a2a.py) only filters the clips; how they meet the DS captions
is left to a later audio-text retrieval. Here each kept clip gets its ``top_k`` DS captions by
audio-text cosine (default 1: the best one), optionally only those at or above
``text_threshold``, so that every kept clip contributes without a second absolute threshold.
Score = the audio-text cosine of the pair; class = the class the DS caption matched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from claptune.curation.common import check_ids, warn_if_empty
from claptune.curation.ds import CaptionSet
from claptune.curation.methods import PAPER_THRESHOLDS
from claptune.curation.pairs import MethodMeta, Pairs
from claptune.curation.search import Triples, check_pair, topk_pairs
from claptune.curation.settings import DEFAULT_SEARCH, SearchOptions, Threshold
from claptune.curation.thresholds import describe

A2A_THRESHOLD = PAPER_THRESHOLDS["a2a"]  # the paper's cosine (claptune.curation.methods)


def audio_to_audio(
    audio_ids: Sequence[str],
    audio_emb: np.ndarray,
    target_emb: np.ndarray,
    ds: CaptionSet,
    threshold: float | str | Threshold = A2A_THRESHOLD,
    top_k: int = 1,
    text_threshold: float | None = None,
    options: SearchOptions = DEFAULT_SEARCH,
) -> Pairs:
    """Pairs (clip, DS caption) for the clips close to the target domain.

    ``audio_emb`` (N, D): unpaired clips ``audio_ids``; ``target_emb`` (T, D): unlabeled target
    clips (their labels are never needed); ``ds``: the DS captions. A quantile threshold is a
    quantile of the N best target cosines.
    """
    audio_emb, target_emb = check_pair(audio_emb, target_emb, "audio_emb", "target_emb")
    check_pair(audio_emb, ds.text_emb, "audio_emb", "DS text_emb")
    audio_ids = check_ids("audio ids", audio_ids, len(audio_emb))
    nearest = topk_pairs(audio_emb, target_emb, 1, **options.kwargs())
    threshold = Threshold.parse(threshold)
    value = threshold.resolve(nearest.score)
    kept = np.flatnonzero(nearest.score >= value)
    meta = MethodMeta(
        method="a2a",
        n_audio=len(audio_ids),
        n_target=len(target_emb),
        n_text=len(ds),
        threshold=str(threshold),
        threshold_value=value,
        clips_kept=int(len(kept)),
        top_k=top_k,
        text_threshold=text_threshold,
        distribution=describe(nearest.score, candidates=[A2A_THRESHOLD, 0.875]),
    )
    warn_if_empty(len(kept), "a2a", value, float(nearest.score.max()))
    if len(kept) == 0:
        return Pairs.empty(meta)
    found = topk_pairs(audio_emb[kept], ds.text_emb, top_k, **options.kwargs())
    if text_threshold is not None:
        best_pair = float(found.score.max())
        keep = found.score >= text_threshold
        found = Triples(found.query[keep], found.key[keep], found.score[keep])
        warn_if_empty(len(found), "a2a pairing", text_threshold, best_pair)
    clips = kept[found.query]
    return Pairs.build(
        [audio_ids[i] for i in clips],
        [ds.texts[j] for j in found.key],
        found.score,
        "a2a",
        [ds.classes[j] for j in found.key],
        meta,
    )


__all__ = ["A2A_THRESHOLD", "audio_to_audio"]
