"""ADS, augmented domain-specific curation: unpaired clips paired with the DS captions whose
audio-text cosine reaches a threshold (paper: 0.7; 0.65 for TUT2017), many-to-many.
Score = the audio-text cosine; class = the class the DS caption matched."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from claptune.curation.common import check_ids, warn_if_empty
from claptune.curation.ds import CaptionSet
from claptune.curation.methods import PAPER_THRESHOLDS
from claptune.curation.pairs import MethodMeta, Pairs
from claptune.curation.search import check_pair, threshold_pairs
from claptune.curation.settings import DEFAULT_SEARCH, SearchOptions, Threshold
from claptune.curation.thresholds import describe, pair_score_sample

ADS_THRESHOLD = PAPER_THRESHOLDS["ads"]  # the paper's cosine (claptune.curation.methods)


def augmented_domain_specific(
    audio_ids: Sequence[str],
    audio_emb: np.ndarray,
    ds: CaptionSet,
    threshold: float | str | Threshold = ADS_THRESHOLD,
    options: SearchOptions = DEFAULT_SEARCH,
) -> Pairs:
    """(clip, DS caption) pairs with audio-text cosine >= ``threshold``.

    ``audio_emb`` (N, D): the teacher's embeddings of the unpaired clips ``audio_ids``; ``ds``:
    the DS captions (``claptune.curation.ds_captions``). A quantile threshold is a quantile of
    all N x M audio-text cosines (estimated from a sample when N x M is large).
    """
    audio_emb, text_emb = check_pair(audio_emb, ds.text_emb, "audio_emb", "DS text_emb")
    audio_ids = check_ids("audio ids", audio_ids, len(audio_emb))
    sample, exact = pair_score_sample(audio_emb, text_emb)
    threshold = Threshold.parse(threshold)
    value = threshold.resolve(sample)
    found = threshold_pairs(audio_emb, text_emb, value, **options.kwargs())
    meta = MethodMeta(
        method="ads",
        n_audio=len(audio_ids),
        n_text=len(ds),
        threshold=str(threshold),
        threshold_value=value,
        distribution=describe(
            sample, exact, len(audio_emb) * len(text_emb), candidates=[0.65, ADS_THRESHOLD]
        ),
    )
    warn_if_empty(len(found), "ads", value, meta["distribution"]["max"])
    return Pairs.build(
        [audio_ids[i] for i in found.query],
        [ds.texts[j] for j in found.key],
        found.score,
        "ads",
        [ds.classes[j] for j in found.key],
        meta,
    )


__all__ = ["ADS_THRESHOLD", "augmented_domain_specific"]
