"""Several curation methods in one call, sharing the DS stage: ``curate(methods, inputs,
settings)`` returns their pairs concatenated, identical (audio, text) pairs merged.

``CurationInputs`` holds what the methods read (embeddings of the teacher and their ids;
``claptune.curation.inputs.build_curation_inputs`` assembles it from named roles); each
method checks that the inputs it needs are there. ``CurationSettings`` holds every threshold
and option, validated on construction; its thresholds default to the one table of
``claptune.curation.methods`` (``CurationSettings.preset("paper")`` for the paper's cosines).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from claptune.curation.a2a import audio_to_audio
from claptune.curation.ads import augmented_domain_specific
from claptune.curation.common import CurationWarning
from claptune.curation.ds import CaptionSet, domain_specific, ds_captions
from claptune.curation.du import domain_unspecific
from claptune.curation.methods import DEFAULT_THRESHOLDS, METHODS, NEEDS
from claptune.curation.pairs import Pairs
from claptune.curation.pseudo import pseudo_label
from claptune.curation.settings import CurationSettings
from claptune.errors import ClaptuneError, printable


@dataclass
class CurationInputs:
    """The teacher's embeddings (L2-normalised (N, D) float32) and what each row is."""

    audio_ids: list[str] | None = None  # unpaired clips (du, ads, a2a)
    audio_emb: np.ndarray | None = None
    texts: list[str] | None = None  # unpaired captions (du)
    text_emb: np.ndarray | None = None
    corpus_audio: list[str] | None = None  # paired corpus: corpus_audio[i] has captions[i]
    corpus_captions: list[str] | None = None
    corpus_caption_emb: np.ndarray | None = None
    target_ids: list[str] | None = None  # unlabeled target-domain clips (a2a, pseudo)
    target_emb: np.ndarray | None = None
    class_names: list[str] | None = None  # target classes, their prompts and embeddings
    prompts: list[str] | None = None
    prompt_emb: np.ndarray | None = None
    logit_scale: float | None = None  # the teacher's (pseudo confidence)
    # the zero-shot classifier pseudo scores with (e.g. prompt-ensemble means), row c for
    # class c; None: prompt_emb. The pairs' text stays prompts[c].
    class_emb: np.ndarray | None = None

    def has(self, what: str) -> bool:
        return {
            "audio": self.audio_emb is not None,
            "text": self.text_emb is not None,
            "corpus": self.corpus_caption_emb is not None,
            "target": self.target_emb is not None,
            "prompts": self.prompt_emb is not None,
        }[what]


def curate(
    methods: list[str] | tuple[str, ...],
    inputs: CurationInputs,
    settings: CurationSettings | None = None,
) -> Pairs:
    """The pairs of every method in ``methods``, in that order, duplicates merged."""
    settings = settings or CurationSettings()
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ClaptuneError(
            f"unknown curation method(s) {unknown}; choose from {', '.join(METHODS)}"
        )
    for method in methods:
        missing = [w for w in NEEDS[method] if not inputs.has(w)]
        if missing:
            raise ClaptuneError(f"method {method} needs {' and '.join(missing)} embeddings")
    opts = settings.search
    parts: list[Pairs] = []
    ds_pairs: Pairs | None = None
    ds_set: CaptionSet | None = None
    if any(m in methods for m in ("ds", "ads", "a2a")):
        ds_pairs = domain_specific(
            inputs.corpus_audio,
            inputs.corpus_captions,
            inputs.corpus_caption_emb,
            inputs.class_names,
            inputs.prompt_emb,
            settings.ds_threshold,
            opts,
        )
        if any(m in methods for m in ("ads", "a2a")):
            ds_set = ds_captions(ds_pairs, inputs.corpus_captions, inputs.corpus_caption_emb)
    for method in methods:
        if method == "du":
            threshold = settings.du_threshold
            if threshold is None and settings.du_top_k is None:
                threshold = DEFAULT_THRESHOLDS["du"]
            parts.append(
                domain_unspecific(
                    inputs.audio_ids,
                    inputs.audio_emb,
                    inputs.texts,
                    inputs.text_emb,
                    threshold,
                    settings.du_top_k,
                    opts,
                )
            )
        elif method == "ds":
            parts.append(_existing_audio(ds_pairs))
        elif method == "ads":
            parts.append(
                augmented_domain_specific(
                    inputs.audio_ids, inputs.audio_emb, ds_set, settings.ads_threshold, opts
                )
            )
        elif method == "a2a":
            parts.append(
                audio_to_audio(
                    inputs.audio_ids,
                    inputs.audio_emb,
                    inputs.target_emb,
                    ds_set,
                    settings.a2a_threshold,
                    settings.a2a_top_k,
                    settings.a2a_text_threshold,
                    opts,
                )
            )
        else:
            if inputs.logit_scale is None and (
                settings.pseudo_criterion == "confidence" or method == "pseudo_refined"
            ):
                raise ClaptuneError(f"{method} needs the model's logit scale")
            class_emb = inputs.prompt_emb if inputs.class_emb is None else inputs.class_emb
            refined = method == "pseudo_refined"
            parts.append(
                pseudo_label(
                    inputs.target_ids,
                    inputs.target_emb,
                    inputs.class_names,
                    class_emb,
                    inputs.logit_scale or 1.0,
                    inputs.prompts,
                    settings.pseudo_criterion,
                    settings.pseudo_refined_threshold if refined else settings.pseudo_threshold,
                    settings.pseudo_max_per_class,
                    refine=settings.pseudo_refined_mode if refined else "none",
                    knn=settings.pseudo_refined_knn,
                    knn_weight=settings.pseudo_refined_knn_weight,
                    prior=settings.pseudo_refined_prior,
                    prior_strength=settings.pseudo_refined_prior_strength,
                )
            )
    merged = Pairs.concat(parts)
    if ds_pairs is not None and "ds" not in methods:
        merged.meta["ds"] = ds_pairs.meta  # the DS stage the other methods used
    return merged.dedup()


def _existing_audio(pairs: Pairs) -> Pairs:
    """``pairs`` without those whose clip does not exist, with one warning naming them.

    DS pairs a corpus clip with its own caption without ever decoding the clip, so a corpus
    manifest naming missing files would otherwise put them into the pairs file (and fail the
    training run that reads it). Only DS needs this: the other methods pair clips that were
    decoded to be embedded.
    """
    from claptune.data.shards import is_member_ref

    # a webdataset shard member was found in its shard's index (claptune.data.shards)
    exists = [is_member_ref(a) or os.path.isfile(a) for a in pairs.audio]
    if all(exists):
        return pairs
    missing = sorted({a for a, e in zip(pairs.audio, exists, strict=True) if not e})
    shown = ", ".join(printable(a) for a in missing[:5])
    more = f", ... ({len(missing)} in all)" if len(missing) > 5 else ""
    warnings.warn(
        f"ds: left out {exists.count(False)} pairs whose {len(missing)} corpus clips "
        f"do not exist: {shown}{more}",
        CurationWarning,
        stacklevel=3,
    )
    kept = pairs.subset(np.flatnonzero(exists))
    kept.meta["missing_audio"] = missing
    return kept


__all__ = ["CurationInputs", "CurationSettings", "METHODS", "NEEDS", "curate"]
