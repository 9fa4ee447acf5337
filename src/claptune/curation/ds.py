"""DS, domain-specific curation (text to text): keep the captions of a paired corpus whose best
cosine to the target prompts "this is a sound of <class>" reaches a threshold (paper: 0.7
ESC-50, 0.6 UrbanSound8K, 0.675 TUT2017), each with its ORIGINAL audio. Score = that best
prompt cosine; class = the class of the best prompt.

``ds_captions`` turns the DS pairs into the caption set that ADS and a2a pair new clips with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from claptune.curation.common import check_ids, warn_if_empty
from claptune.curation.methods import PAPER_THRESHOLDS
from claptune.curation.pairs import MethodMeta, Pairs
from claptune.curation.search import as_embeddings, check_pair, topk_pairs
from claptune.curation.settings import DEFAULT_SEARCH, SearchOptions, Threshold
from claptune.curation.thresholds import describe
from claptune.errors import ClaptuneError

DS_THRESHOLD = PAPER_THRESHOLDS["ds"]  # the paper's cosine (claptune.curation.methods)


@dataclass
class CaptionSet:
    """Distinct captions with their embeddings and the class each matched."""

    texts: list[str]
    text_emb: np.ndarray  # (M, D) float32 L2-normalised
    classes: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def domain_specific(
    corpus_audio: Sequence[str],
    captions: Sequence[str],
    caption_emb: np.ndarray,
    class_names: Sequence[str],
    prompt_emb: np.ndarray,
    threshold: float | str | Threshold = DS_THRESHOLD,
    options: SearchOptions = DEFAULT_SEARCH,
) -> Pairs:
    """(original clip, caption) for every corpus caption whose best prompt cosine reaches
    ``threshold``.

    ``corpus_audio[i]`` is the clip of ``captions[i]``; ``caption_emb`` (M, D) embeds the
    captions and ``prompt_emb`` (C, D) the prompts of ``class_names``, both with the teacher's
    text encoder. A quantile threshold is a quantile of the M best-prompt cosines.
    """
    caption_emb, prompt_emb = check_pair(caption_emb, prompt_emb, "caption_emb", "prompt_emb")
    corpus_audio = check_ids("corpus clips", corpus_audio, len(caption_emb))
    captions = check_ids("captions", captions, len(caption_emb))
    class_names = check_ids("class names", class_names, len(prompt_emb))
    best = topk_pairs(caption_emb, prompt_emb, 1, **options.kwargs())
    threshold = Threshold.parse(threshold)
    value = threshold.resolve(best.score)
    keep = np.flatnonzero(best.score >= value)
    meta = MethodMeta(
        method="ds",
        n_captions=len(captions),
        n_classes=len(class_names),
        threshold=str(threshold),
        threshold_value=value,
        distribution=describe(best.score, candidates=[0.6, 0.675, 0.7]),
    )
    warn_if_empty(len(keep), "ds", value, float(best.score.max()))
    return Pairs.build(
        [corpus_audio[i] for i in keep],
        [captions[i] for i in keep],
        best.score[keep],
        "ds",
        [class_names[c] for c in best.key[keep]],
        meta,
    )


def ds_captions(ds_pairs: Pairs, captions: Sequence[str], caption_emb: np.ndarray) -> CaptionSet:
    """The distinct captions of ``ds_pairs`` (first-seen order) with their embeddings, looked
    up in ``captions``/``caption_emb`` (the arrays ``domain_specific`` was given)."""
    caption_emb = as_embeddings("caption_emb", caption_emb)
    row = {}
    for i, text in enumerate(captions):
        row.setdefault(str(text), i)
    class_of: dict[str, str] = {}
    for text, cls in zip(ds_pairs.text, ds_pairs.classes, strict=True):
        if text not in row:
            raise ClaptuneError(f"DS caption {text!r} is not among the given captions")
        class_of.setdefault(text, cls)
    texts, classes = list(class_of), list(class_of.values())
    if not texts:
        raise ClaptuneError(
            "DS kept no captions: nothing to pair clips with (lower the DS threshold)"
        )
    return CaptionSet(texts, caption_emb[[row[t] for t in texts]], classes)


__all__ = ["CaptionSet", "DS_THRESHOLD", "domain_specific", "ds_captions"]
