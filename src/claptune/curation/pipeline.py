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
from dataclasses import dataclass, field, fields

import numpy as np

from claptune.curation.a2a import audio_to_audio
from claptune.curation.ads import augmented_domain_specific
from claptune.curation.common import DEFAULT_SEARCH, CurationWarning, SearchOptions
from claptune.curation.ds import CaptionSet, domain_specific, ds_captions
from claptune.curation.du import domain_unspecific
from claptune.curation.methods import DEFAULT_THRESHOLDS, METHODS, NEEDS, THRESHOLD_PRESETS
from claptune.curation.pairs import Pairs
from claptune.curation.priors import DEFAULT_PRIOR_STRENGTH, PRIORS
from claptune.curation.pseudo import CRITERIA, REFINES, pseudo_label
from claptune.curation.thresholds import Threshold
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


@dataclass
class CurationSettings:
    """Thresholds (raw cosine or "q<quantile>") and options of every method."""

    # None: the table's (q0.99), or no threshold with du_top_k
    du_threshold: float | str | None = None
    du_top_k: int | None = None  # top-k captions per clip instead of a threshold
    ds_threshold: float | str = DEFAULT_THRESHOLDS["ds"]
    ads_threshold: float | str = DEFAULT_THRESHOLDS["ads"]
    a2a_threshold: float | str = DEFAULT_THRESHOLDS["a2a"]
    a2a_top_k: int = 1  # DS captions per kept clip
    a2a_text_threshold: float | None = None  # and only those at or above this cosine
    pseudo_criterion: str = "confidence"
    pseudo_threshold: float | str = DEFAULT_THRESHOLDS["pseudo"]
    pseudo_max_per_class: int | None = None  # None: 2x a class's balanced share, 0: no cap
    # pseudo_refined: pseudo with the labels refined first (claptune.curation.pseudo); it
    # shares pseudo's criterion and per-class cap
    pseudo_refined_threshold: float | str = DEFAULT_THRESHOLDS["pseudo_refined"]
    # knn | balance | knn_balance | crossfit_lp_balance (cross-fitted label propagation, then
    # balancing: a clip's label from the other half's scores; bench/bench_guard.py compares)
    pseudo_refined_mode: str = "knn_balance"
    pseudo_refined_knn: int = 3  # neighbours of the knn step
    pseudo_refined_knn_weight: float = 0.5  # share of the neighbours' probabilities
    # the class shares balancing aims at: uniform (a balanced task), or em (the pool's shares
    # estimated without labels; claptune.curation.priors). Uniform stays the default: with the
    # default model (about 24 % zero-shot on 50 classes) EM's estimate was further from the true
    # shares than uniform on skewed pools too (docs/curation.md, bench/results/skewed.md)
    pseudo_refined_prior: str = "uniform"
    pseudo_refined_prior_strength: float = DEFAULT_PRIOR_STRENGTH  # EM's pseudo-clips per class
    search: SearchOptions = field(default=DEFAULT_SEARCH)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                f.name.endswith("_threshold")
                and f.name != "a2a_text_threshold"
                and value is not None
            ):
                try:
                    Threshold.parse(value)
                except ValueError as err:
                    raise ClaptuneError(f"{f.name}: {err}") from None
        for name in ("du_top_k", "a2a_top_k"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ClaptuneError(f"{name} must be >= 1, got {value}")
        if self.pseudo_criterion not in CRITERIA:
            raise ClaptuneError(f"pseudo_criterion must be one of {', '.join(CRITERIA)}")
        if self.pseudo_max_per_class is not None and self.pseudo_max_per_class < 0:
            raise ClaptuneError("pseudo_max_per_class must be >= 0")
        if self.pseudo_refined_mode not in REFINES[1:]:
            raise ClaptuneError(f"pseudo_refined_mode must be one of {', '.join(REFINES[1:])}")
        if self.pseudo_refined_prior not in PRIORS:
            raise ClaptuneError(f"pseudo_refined_prior must be one of {', '.join(PRIORS)}")
        if not self.pseudo_refined_prior_strength >= 0:
            raise ClaptuneError("pseudo_refined_prior_strength must be >= 0")
        if self.pseudo_refined_knn < 1 or not 0.0 <= self.pseudo_refined_knn_weight <= 1.0:
            raise ClaptuneError(
                "pseudo_refined_knn must be >= 1 and pseudo_refined_knn_weight in [0, 1]"
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> CurationSettings:
        """The thresholds of table ``name`` (``quantile``, the default; ``paper``), then
        ``overrides``. du keeps no threshold of the table when ``du_top_k`` is given."""
        if name not in THRESHOLD_PRESETS:
            raise ClaptuneError(
                f"unknown threshold preset {name!r}; choose from {', '.join(THRESHOLD_PRESETS)}"
            )
        table = {f"{m}_threshold": v for m, v in THRESHOLD_PRESETS[name].items()}
        if overrides.get("du_top_k") is not None:
            table["du_threshold"] = None
        return cls.from_dict({**table, **overrides})

    @classmethod
    def from_dict(cls, values: dict) -> CurationSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ClaptuneError(f"unknown curation settings {unknown}; known: {sorted(known)}")
        return cls(**values)


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
