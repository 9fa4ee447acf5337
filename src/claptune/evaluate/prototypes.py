"""A class head from unlabeled clips: each class's text embedding moved towards the mean audio
embedding of the clips that transduction assigns to it.

A zero-shot classifier compares a clip with text embeddings, which sit apart from the audio
embeddings (the modality gap). Given unlabeled clips of the task, each class also has an audio
prototype: the mean of the clips labelled with it. InMaP (Qian, Xu and Hu, NeurIPS 2023,
"Intra-Modal Proxy Learning for Zero-Shot Visual Categorization with CLIP", arXiv 2310.19752)
learns such proxies in the image space from the text proxies' pseudo-labels of unlabeled target
data. Here the proxy has a closed form: the mean of the clips' L2-normalised audio embeddings,
each weighted by its class probability from ``claptune.evaluate.transductive`` (the class means
of TransCLIP's mixture, arXiv 2406.01837), renormalised and added to the text classifier:

    row_c = normalise(text_c + weight * normalise(sum_i q_ic x_i))

The head is fitted once on a pool of clips (``fit_class_head``) and then classifies any clip
alone, clips it never saw included: ``improve`` fits it on each split's adaptation pool and
scores the test part, and saves the one fitted on every clip beside ``RUN/model``
(``claptune.models.class_head``: ``ClassHead``, ``HEAD_FILE``), where ``load_model`` attaches it
and ``claptune zeroshot`` uses it when it holds every class asked for (``ClassHead.covers``).
No label is read, and the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from claptune.models.class_head import HEAD_FILE, ClassHead, head_summary, unit_rows

# weight of the audio prototypes against the text classifier; chosen on our own 8:1 class orders
# of the ESC-50 subset among 0.25-2 (bench/notes/class_head_dev.md)
DEFAULT_HEAD_WEIGHT = 0.5
MIN_HEAD_CLIPS = 2  # fewer clips than this fit no head


def class_means(audio_emb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(C, D) unit rows: each class's mean of the L2-normalised ``audio_emb`` (N, D) weighted by
    its column of ``probs`` (N, C); a class no clip has any probability of is a zero row."""
    return unit_rows(np.asarray(probs, np.float64).T @ unit_rows(audio_emb))


def fit_class_head(
    audio_emb: np.ndarray,
    prompt_emb: np.ndarray,
    logit_scale: float,
    class_names: Sequence[str],
    weight: float = DEFAULT_HEAD_WEIGHT,
    transduction: str = "claptune",
) -> ClassHead:
    """The class head of the clips ``audio_emb`` (N, D): their class probabilities by
    ``transduction`` (``claptune.evaluate.transductive``) from the prompts ``prompt_emb``
    (C, T, D) and ``logit_scale``, then ``class_means``."""
    from claptune.evaluate.transductive import transduce

    if len(audio_emb) < MIN_HEAD_CLIPS:
        raise ValueError(f"a class head needs at least {MIN_HEAD_CLIPS} clips")
    if not 0 <= weight < np.inf:
        raise ValueError(f"the class head's weight must be finite and at least 0, got {weight}")
    if len(prompt_emb) != len(class_names):
        raise ValueError(f"{len(prompt_emb)} classes of prompts for {len(class_names)} class names")
    probs = transduce(audio_emb, prompt_emb, logit_scale, transduction)
    return ClassHead(
        class_names=tuple(class_names),
        means=class_means(audio_emb, probs).astype(np.float32),
        weight=float(weight),
        n_clips=len(audio_emb),
        transduction=transduction,
    )


__all__ = [
    "DEFAULT_HEAD_WEIGHT",
    "HEAD_FILE",
    "MIN_HEAD_CLIPS",
    "ClassHead",
    "class_means",
    "fit_class_head",
    "head_summary",
]
