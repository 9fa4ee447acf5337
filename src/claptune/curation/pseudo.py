"""Pseudo-labels (beyond the paper): unlabeled target-domain clips paired with the class prompt
they match best, kept when the teacher is sure enough, with a per-class cap.

Sureness is either the ``confidence`` (softmax probability of the best class at the model's
logit scale, the zero-shot classifier's own probability) or the ``margin`` (best minus
second-best prompt cosine, which does not depend on the logit scale). The cap keeps the most
sure clips of each class so that a class the teacher over-predicts cannot flood the set; by
default it is twice a class's balanced share of the target clips. Score = the sureness value;
text = the class prompt; class = the predicted class.

``refine`` (beyond the paper; the ``pseudo_refined`` curation method) improves the labels before choosing, with
no label: ``knn`` mixes each clip's class probabilities with those of its ``knn`` nearest
target clips (the teacher's audio-audio cosine: clips that sound alike share a class more
often than the classifier alone says); ``balance`` rescales the probabilities so that every
class receives an equal share of the clips (Sinkhorn-Knopp, the transductive prior of a
balanced task: it stops a few classes the text side over-predicts from taking most clips);
``knn_balance`` does both, in that order. ``prior`` says which shares ``balance`` aims at:
``uniform`` (an equal share per class) or ``em``, the pool's own class shares estimated without
labels (``claptune.curation.priors``: EM under label shift, Saerens et al. 2002, shrunk towards
uniform by ``prior_strength`` pseudo-clips per class). On the ESC-50 subset with the default model, the
quarter of the adaptation clips the refined labels are surest of were 56-65 % correct against
38-40 % without refinement (adaptation-part labels read for this diagnosis only; see
docs/curation.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from claptune.curation.common import check_ids, warn_if_empty
from claptune.curation.pairs import MethodMeta, Pairs
from claptune.curation.priors import estimate_prior, sinkhorn
from claptune.curation.search import check_pair, topk_pairs
from claptune.curation.settings import CRITERIA, DEFAULT_PRIOR_STRENGTH, PRIORS, REFINES, Threshold
from claptune.curation.thresholds import describe

CROSSFIT_FOLDS = 2  # crossfit_lp_balance: a clip's label comes from the other half's scores
ROWS_PER_BLOCK = 65536  # clips scored at once: the (rows, C) float64 logits stay small


def pseudo_predictions(
    audio_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted class, softmax confidence, cosine margin) per clip, in blocks of clips."""
    n = len(audio_emb)
    pred, conf, margin = np.empty(n, np.int64), np.empty(n), np.empty(n)
    prompts = prompt_emb.astype(np.float64)
    for r0 in range(0, n, ROWS_PER_BLOCK):
        r1 = min(r0 + ROWS_PER_BLOCK, n)
        cos = audio_emb[r0:r1].astype(np.float64) @ prompts.T
        top = np.argmax(cos, axis=1)
        best = cos[np.arange(r1 - r0), top]
        logits = logit_scale * (cos - best[:, None])  # max-subtracted softmax
        conf[r0:r1] = 1.0 / np.exp(logits).sum(axis=1)
        second = np.partition(cos, -2, axis=1)[:, -2] if cos.shape[1] > 1 else best - 1.0
        pred[r0:r1], margin[r0:r1] = top, best - second
    return pred, conf, margin


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def knn_smooth(
    probs: np.ndarray, audio_emb: np.ndarray, k: int = 3, weight: float = 0.5
) -> np.ndarray:
    """(1 - weight) * probs + weight * the mean probs of each clip's ``k`` nearest other clips
    (exact cosine of ``audio_emb``, lower index first on ties; the blocked search of
    ``claptune.curation.search``, so memory stays bounded for large unlabeled sets)."""
    n = len(probs)
    k = min(k, n - 1)
    if k < 1 or weight == 0:
        return probs
    found = topk_pairs(audio_emb, audio_emb, k + 1).key.reshape(n, k + 1)
    neighbours = np.array([[j for j in row if j != i][:k] for i, row in enumerate(found)])
    return (1 - weight) * probs + weight * probs[neighbours].mean(axis=1)


def crossfit_propagation(
    probs: np.ndarray, audio_emb: np.ndarray, folds: int = CROSSFIT_FOLDS, seed: int = 0
) -> np.ndarray:
    """Cross-fitted label propagation (``claptune.evaluate.transductive.label_propagation``,
    its defaults): the clips are dealt into ``folds`` seeded folds; for each fold its clips'
    own zero-shot probabilities are replaced by uniform ones before propagating, and their
    result is kept. So a clip's refined label comes from the other folds' zero-shot scores
    carried over the kNN audio graph, never from its own: a student trained on it is not
    trained to copy the teacher's own view of the clip."""
    from claptune.evaluate.transductive import label_propagation

    n, c = probs.shape
    fold = np.random.default_rng(seed).permutation(n) % max(1, min(folds, n))
    out = np.empty_like(probs, dtype=np.float64)
    for f in np.unique(fold):
        y = np.array(probs, dtype=np.float64)
        y[fold == f] = 1.0 / c
        out[fold == f] = label_propagation(y, audio_emb)[fold == f]
    return out


def balance(
    probs: np.ndarray, marginal: np.ndarray | None = None, iterations: int = 100, tol: float = 1e-9
) -> np.ndarray:
    """Sinkhorn-Knopp: rescale rows and columns until class c holds ``marginal[c]`` of the total
    mass (default: an equal share) and every clip's row sums to 1; the row-normalised result."""
    return sinkhorn(probs, marginal, iterations, tol)


def refined_probs(
    audio_emb: np.ndarray,
    class_emb: np.ndarray,
    logit_scale: float,
    refine: str = "knn_balance",
    k: int = 3,
    weight: float = 0.5,
    prior: str = "uniform",
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, C) refined class probabilities and the (C,) class shares they were balanced to
    (None when ``refine`` does not balance)."""
    if refine not in REFINES:
        raise ValueError(f"refine must be one of {REFINES}, got {refine!r}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    probs = _softmax(logit_scale * (audio_emb.astype(np.float64) @ class_emb.astype(np.float64).T))
    if refine == "crossfit_lp_balance":
        probs = crossfit_propagation(probs, audio_emb)
        marginal = estimate_prior(probs, prior, prior_strength)
        return balance(probs, marginal), marginal
    if refine in ("knn", "knn_balance"):
        probs = knn_smooth(probs, audio_emb, k, weight)
    marginal = None
    if refine in ("balance", "knn_balance"):
        marginal = estimate_prior(probs, prior, prior_strength)
        probs = balance(probs, marginal)
    return probs, marginal


def refined_scores(
    audio_emb: np.ndarray,
    class_emb: np.ndarray,
    logit_scale: float,
    refine: str = "knn_balance",
    k: int = 3,
    weight: float = 0.5,
    prior: str = "uniform",
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted class, refined probability of it, margin to the second class's probability)."""
    probs, _ = refined_probs(
        audio_emb, class_emb, logit_scale, refine, k, weight, prior, prior_strength
    )
    return _scores(probs)


def _scores(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.argmax(probs, axis=1)
    conf = probs[np.arange(len(probs)), pred]
    second = np.partition(probs, -2, axis=1)[:, -2] if probs.shape[1] > 1 else np.zeros(len(probs))
    return pred, conf, conf - second


def pseudo_label(
    target_ids: Sequence[str],
    target_emb: np.ndarray,
    class_names: Sequence[str],
    prompt_emb: np.ndarray,
    logit_scale: float,
    prompts: Sequence[str] | None = None,
    criterion: str = "confidence",
    threshold: float | str | Threshold = "q0.5",
    max_per_class: int | None = None,
    refine: str = "none",
    knn: int = 3,
    knn_weight: float = 0.5,
    prior: str = "uniform",
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> Pairs:
    """(target clip, prompt of its predicted class) for the clips at or above ``threshold``.

    ``target_emb`` (N, D): teacher embeddings of the unlabeled target clips ``target_ids``;
    ``prompt_emb`` (C, D): the prompts of ``class_names`` (``prompts``, the pair texts; default
    the class names); ``logit_scale``: the teacher's multiplier of cosines (for confidence).
    ``threshold`` applies to ``criterion``; the default keeps the surer half. ``max_per_class``
    None = 2 x ceil(N / C), 0 = no cap. ``refine`` (``knn``/``knn_weight``: its neighbours)
    replaces the softmax by the refined probabilities for both the label and the sureness
    (margin then = best minus second-best refined probability); its pairs are named
    ``pseudo_refined``; ``prior``/``prior_strength``: the class shares its balancing aims at
    (meta ``class_shares``). Rows are ordered by clip.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if not (np.isfinite(logit_scale) and logit_scale > 0):
        raise ValueError(f"logit_scale must be a positive number, got {logit_scale}")
    if max_per_class is not None and max_per_class < 0:
        raise ValueError(f"max_per_class must be >= 0, got {max_per_class}")
    target_emb, prompt_emb = check_pair(target_emb, prompt_emb, "target_emb", "prompt_emb")
    target_ids = check_ids("target clips", target_ids, len(target_emb))
    class_names = check_ids("class names", class_names, len(prompt_emb))
    prompts = class_names if prompts is None else check_ids("prompts", prompts, len(prompt_emb))
    if knn < 1 or not 0.0 <= knn_weight <= 1.0:
        raise ValueError(f"need knn >= 1 and 0 <= knn_weight <= 1, got {knn}, {knn_weight}")
    shares = None
    if refine == "none":
        pred, conf, margin = pseudo_predictions(target_emb, prompt_emb, float(logit_scale))
    else:  # refined_probs rejects an unknown refine or prior
        probs, shares = refined_probs(
            target_emb,
            prompt_emb,
            float(logit_scale),
            refine,
            knn,
            knn_weight,
            prior,
            prior_strength,
        )
        pred, conf, margin = _scores(probs)
    score = conf if criterion == "confidence" else margin
    threshold = Threshold.parse(threshold)
    value = threshold.resolve(score)
    sure = score >= value
    if max_per_class is None:
        max_per_class = 2 * math.ceil(len(target_ids) / len(class_names))
    keep = _cap_per_class(np.flatnonzero(sure), pred, score, max_per_class)
    name = "pseudo" if refine == "none" else "pseudo_refined"
    meta = MethodMeta(
        method=name,
        n_target=len(target_ids),
        n_classes=len(class_names),
        criterion=criterion,
        refine=refine,
        logit_scale=float(logit_scale),
        prior=prior if shares is not None else None,
        class_shares=None
        if shares is None
        else dict(zip(class_names, shares.tolist(), strict=True)),
        threshold=str(threshold),
        threshold_value=value,
        max_per_class=max_per_class,
        above_threshold=int(sure.sum()),
        dropped_by_cap=int(sure.sum() - len(keep)),
        distribution=describe(score),
    )
    warn_if_empty(len(keep), name, value, float(score.max()))
    return Pairs.build(
        [target_ids[i] for i in keep],
        [prompts[pred[i]] for i in keep],
        score[keep],
        name,
        [class_names[pred[i]] for i in keep],
        meta,
    )


def _cap_per_class(
    candidates: np.ndarray, pred: np.ndarray, score: np.ndarray, cap: int
) -> np.ndarray:
    """The ``cap`` highest-scoring candidates of each class (lower clip index on ties), in clip
    order; all of them when ``cap`` is 0."""
    if cap == 0:
        return candidates
    order = candidates[np.lexsort((candidates, -score[candidates]))]
    taken: dict[int, int] = {}
    kept = []
    for i in order:
        c = int(pred[i])
        if taken.get(c, 0) < cap:
            taken[c] = taken.get(c, 0) + 1
            kept.append(i)
    return np.sort(np.asarray(kept, dtype=np.int64))


__all__ = [
    "CRITERIA",
    "REFINES",
    "balance",
    "pseudo_predictions",
    "crossfit_propagation",
    "knn_smooth",
    "pseudo_label",
    "refined_probs",
    "refined_scores",
]
