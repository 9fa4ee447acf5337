"""Transductive inference: better class probabilities for a set of unlabeled clips, from the
clips themselves, without a label and without training.

A zero-shot classifier scores each clip alone. The clips of one task, taken together, say more:
clips that sound alike tend to share a class, the classes form clusters in the audio embedding
space, and some prompt wordings fit a clip better than others. Every function here takes a
model's scores (teacher or student) and the clips' audio embeddings, and returns (N, C) class
probabilities; all are deterministic (no random draw; ties go to the lower index) and label-free.

- ``sinkhorn_probs``: optimal-transport balancing of the probabilities to given class shares
  (Sinkhorn-Knopp; OTTER, Shin et al., NeurIPS 2024, "OTTER: Effortless label distribution
  adaptation of zero-shot models"): stops a few classes the text side over-predicts from taking
  most clips. Uniform shares, or shares estimated without labels (``claptune.curation.priors``).
- ``label_propagation``: the zero-shot probabilities diffused over the symmetric kNN graph of
  the clips' audio embeddings, F = (1 - alpha) (I - alpha S)^-1 Y with S the normalised graph
  (Zhou et al., NIPS 2003, "Learning with local and global consistency"; ZLaP, Kalantidis et
  al., CVPR 2024, "Label Propagation for Zero-shot Classification with Vision-Language
  Models", which propagates from text nodes; we propagate the clips' own zero-shot scores).
- ``gaussian_em``: a text-anchored Gaussian mixture over the clips' audio embeddings fitted by
  block majorise-minimise, TransCLIP's zero-shot objective (Zanella, Gérin and Ben Ayed,
  NeurIPS 2024, "Boosting Vision-Language Models with Transduction", arXiv 2406.01837): class
  means and one shared diagonal covariance, assignments z pulled towards the zero-shot
  probabilities by a KL term and towards their kNN neighbours' assignments by a Laplacian term.
- ``entropy_prompt_weights``: per clip, each prompt template weighted by how sure its own
  zero-shot distribution is (low entropy, more weight), instead of the plain template average;
  the zero-shot ensemble re-weighted without labels in the spirit of entropy-guided prompt
  weighting for CLAP (arXiv 2601.05011) and of zero-shot prompt ensembling (Allingham et al.,
  ICML 2023).

``transduce`` chains them by name (``TRANSDUCTIONS``); ``predictions_table`` turns the result
into one row per clip (label, confidence, runner-up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.curation.priors import estimate_prior, sinkhorn
from claptune.curation.settings import DEFAULT_PRIOR_STRENGTH, PRIORS

# the named pipelines ``transduce`` runs; "claptune" is the default chain (see ``transduce``)
TRANSDUCTIONS = (
    "none",
    "entropy",
    "sinkhorn",
    "label_propagation",
    "gaussian_em",
    "claptune",
)
DEFAULT_TRANSDUCTION = "claptune"
ROWS_PER_BLOCK = 4096  # clips whose cosines to all clips are held at once by the kNN search


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def knn_indices(audio_emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """((N, k) indices, (N, k) cosines) of each clip's ``k`` nearest other clips by cosine of
    the L2-normalised rows of ``audio_emb``, nearest first (lower index first on ties)."""
    x = np.asarray(audio_emb, np.float64)
    n = len(x)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0))
    idx = np.empty((n, k), np.int64)
    for r0 in range(0, n, ROWS_PER_BLOCK):
        sim = x[r0 : r0 + ROWS_PER_BLOCK] @ x.T
        sim[np.arange(len(sim)), np.arange(r0, r0 + len(sim))] = -np.inf
        # candidates by a partial sort, then an exact stable order: equal cosines keep index order
        part = np.argpartition(-sim, k, axis=1)[:, : k + 1]
        cand_sim = np.take_along_axis(sim, part, axis=1)
        order = np.lexsort((part, -cand_sim), axis=1)[:, :k]
        idx[r0 : r0 + len(sim)] = np.take_along_axis(part, order, axis=1)
    sims = np.einsum("nd,nkd->nk", x, x[idx])
    return idx, sims


def knn_graph(audio_emb: np.ndarray, k: int, symmetric: bool = True):
    """(N, N) sparse affinity (``scipy.sparse`` CSR): the cosine, clipped at 0, between each clip
    and each of its ``k`` nearest neighbours; W + W^T when ``symmetric``."""
    from scipy import sparse

    idx, sim = knn_indices(audio_emb, k)
    n = len(idx)
    rows = np.repeat(np.arange(n), idx.shape[1])
    w = sparse.csr_matrix((np.clip(sim.ravel(), 0.0, None), (rows, idx.ravel())), shape=(n, n))
    return (w + w.T).tocsr() if symmetric else w


def sinkhorn_probs(
    probs: np.ndarray,
    prior: str = "uniform",
    prior_strength: float = DEFAULT_PRIOR_STRENGTH,
) -> np.ndarray:
    """``probs`` (N, C) balanced by Sinkhorn-Knopp to class shares ``prior`` (``uniform`` or
    ``em``: estimated from ``probs`` alone, ``claptune.curation.priors``)."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    return sinkhorn(probs, estimate_prior(probs, prior, prior_strength))


def label_propagation(
    probs: np.ndarray,
    audio_emb: np.ndarray,
    k: int = 5,
    alpha: float = 0.8,
    iterations: int = 50,
) -> np.ndarray:
    """Zero-shot probabilities ``probs`` (N, C) diffused over the kNN audio graph.

    Iterates F <- alpha S F + (1 - alpha) Y from F = Y, S = D^-1/2 W D^-1/2 (``knn_graph``); the
    fixed point is (1 - alpha)(I - alpha S)^-1 Y. ``alpha`` in [0, 1): 0 returns ``probs``.
    Returned rows are renormalised to sum to 1.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    y = np.asarray(probs, np.float64)
    from scipy import sparse

    w = knn_graph(audio_emb, k)
    d = np.asarray(w.sum(axis=1)).ravel()
    inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    s = sparse.diags(inv) @ w @ sparse.diags(inv)
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + (1.0 - alpha) * y
    f = np.clip(f, 1e-300, None)
    return f / f.sum(axis=1, keepdims=True)


def gaussian_em(
    probs: np.ndarray,
    audio_emb: np.ndarray,
    k: int = 3,
    lam: float = 1.0,
    iterations: int = 10,
    n_init: int = 8,
    temperature: float = 50.0,
) -> np.ndarray:
    """TransCLIP's zero-shot solver (arXiv 2406.01837, its published settings): assignments z
    (N, C) of the clips ``audio_emb`` (N, D) to a Gaussian mixture anchored on the zero-shot
    probabilities ``probs``.

    Initialisation: each class mean from its ``n_init`` most probable clips, one shared
    diagonal variance 1/D. Each iteration: z_i proportional to probs_i ** lam x exp((log N(x_i |
    mu, Sigma) + sum_j W_ij z_j ...) / temperature) (the Laplacian term over the symmetric
    ``k``-NN affinity W, weighted temperature / (2k) as published), then means and the shared
    variance re-estimated from z. Means are kept on the unit sphere, like the embeddings.
    """
    y = np.clip(np.asarray(probs, np.float64), 1e-300, None)
    x = np.asarray(audio_emb, np.float64)
    n, c = y.shape
    d = x.shape[1]
    z = y.copy()
    # means: the confidence-weighted mean of each class's n_init most probable clips
    top = np.argsort(-z, axis=0, kind="stable")[: min(n_init, n)]  # (n_init, C)
    mu = np.stack([(x[top[:, j]] * z[top[:, j], j, None]).mean(axis=0) for j in range(c)])
    mu /= np.clip(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12, None)
    var = np.full(d, 1.0 / d)
    w = knn_graph(x, k, symmetric=False)
    w_sym = (w + w.T).tocsr()  # the Laplacian term's W z + W^T z
    kk = max(min(k, n - 1), 1)
    for it in range(iterations + 1):
        # log N(x | mu_c, diag(var)) up to a constant: -0.5 sum_d (x - mu)^2 / var
        inv = 1.0 / var
        loglik = -0.5 * ((x**2) @ inv[:, None] - 2.0 * x @ (mu * inv).T + ((mu**2) @ inv)[None, :])
        for _ in range(5):  # the assignment update, a few fixed-point steps as published
            logits = loglik + (temperature / (2 * kk)) * (w_sym @ z)
            logits -= logits.max(axis=1, keepdims=True)
            z = (y**lam) * np.exp(logits / temperature)
            z /= z.sum(axis=1, keepdims=True)
        if it == iterations:
            break
        mass = z.sum(axis=0)
        mu = (z.T @ x) / np.clip(mass[:, None], 1e-12, None)
        mu /= np.clip(np.linalg.norm(mu, axis=1, keepdims=True), 1e-12, None)
        # sum_i sum_c z_ic (x_i - mu_c)^2 per dimension, without the (N, C, D) array
        sq = (
            (x**2 * z.sum(axis=1, keepdims=True)).sum(axis=0)
            - 2.0 * (x * (z @ mu)).sum(axis=0)
            + (mass[:, None] * mu**2).sum(axis=0)
        )
        var = np.clip(sq / n, 1e-12, None)
    return z


def entropy_prompt_weights(
    audio_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float
) -> np.ndarray:
    """(N, T) per-clip weights of T prompt templates: softmax over templates of minus the
    entropy of each template's own zero-shot distribution for the clip.

    ``prompt_emb`` (C, T, D): template t of class c, L2-normalised. A template whose classifier
    is sure of a clip (low entropy) gets more weight for that clip; weights sum to 1 per clip.
    """
    a = np.asarray(audio_emb, np.float64)
    p = np.asarray(prompt_emb, np.float64)
    logits = logit_scale * np.einsum("nd,ctd->ntc", a, p)  # (N, T, C)
    z = logits - logits.max(axis=2, keepdims=True)
    q = np.exp(z)
    q /= q.sum(axis=2, keepdims=True)
    entropy = -(q * np.log(np.clip(q, 1e-300, None))).sum(axis=2)  # (N, T)
    return softmax(-entropy)


def entropy_weighted_scores(
    audio_emb: np.ndarray, prompt_emb: np.ndarray, logit_scale: float
) -> np.ndarray:
    """(N, C) cosines with a per-clip class embedding: the templates of each class averaged
    with ``entropy_prompt_weights`` and renormalised (the plain ensemble when the weights are
    equal)."""
    a = np.asarray(audio_emb, np.float64)
    p = np.asarray(prompt_emb, np.float64)
    w = entropy_prompt_weights(a, p, logit_scale)  # (N, T)
    per_template = np.einsum("nd,ctd->nct", a, p)  # cos with each template (N, C, T)
    # cosine with the renormalised weighted mean of the templates of each class:
    # (sum_t w_t a.p_ct) / ||sum_t w_t p_ct||, the norm from the templates' Gram matrices
    gram = np.einsum("ctd,csd->cts", p, p)  # (C, T, T)
    norm = np.sqrt(np.clip(np.einsum("nt,cts,ns->nc", w, gram, w), 1e-24, None))
    return np.einsum("nct,nt->nc", per_template, w) / norm


@dataclass(frozen=True)
class TransductionConfig:
    """Settings of ``transduce``; every default is the published one of its method or was
    chosen on our own class orders of the ESC-50 subset (bench/bench_transduction.py)."""

    method: str = DEFAULT_TRANSDUCTION
    prior: str = "uniform"  # class shares of the balancing step: uniform or em (estimated)
    prior_strength: float = DEFAULT_PRIOR_STRENGTH
    lp_k: int = 5  # label propagation: neighbours per clip
    lp_alpha: float = 0.8  # label propagation: weight of the graph against the zero-shot scores
    # the claptune chain's label propagation: 3 neighbours per clip, chosen among 2-10 (with
    # alpha 0.5-0.95) on class orders 6000-6009 and confirmed on fresh orders 7000-7009, where it
    # beat the 5 of the standalone method on every imbalance ratio (bench/notes/transduction.md)
    chain_k: int = 3
    em_k: int = 3  # Gaussian EM: neighbours of the Laplacian term (TransCLIP: 3)
    em_lambda: float = 1.0  # Gaussian EM: weight of the zero-shot KL anchor (TransCLIP: 1)
    em_iterations: int = 10  # TransCLIP: 10

    def __post_init__(self) -> None:
        if self.method not in TRANSDUCTIONS:
            raise ValueError(
                f"unknown transduction {self.method!r}; choose from {', '.join(TRANSDUCTIONS)}"
            )
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {self.prior!r}")


def transduce(
    audio_emb: np.ndarray,
    prompt_emb: np.ndarray,
    logit_scale: float,
    config: TransductionConfig | str = DEFAULT_TRANSDUCTION,
) -> np.ndarray:
    """(N, C) class probabilities of the clips ``audio_emb`` (N, D) by ``config.method``.

    ``prompt_emb`` (C, T, D): every template of every class (T may be 1); the plain zero-shot
    classifier is their renormalised mean. ``logit_scale``: the model's multiplier of cosines.

    - ``none``: the zero-shot softmax of the template ensemble.
    - ``entropy``: the same with per-clip entropy-weighted templates.
    - ``sinkhorn``: ``none`` balanced to the class shares ``config.prior``.
    - ``label_propagation``: ``none`` diffused over the kNN audio graph.
    - ``gaussian_em``: TransCLIP's text-anchored Gaussian mixture, from ``none``.
    - ``claptune``: label propagation over each clip's 3 nearest clips, then Sinkhorn balancing
      (the chain that measured best on our own skewed class orders of the ESC-50 subset;
      bench/results/transduction.md).
    """
    cfg = TransductionConfig(method=config) if isinstance(config, str) else config
    a = np.asarray(audio_emb, np.float64)
    p = np.asarray(prompt_emb, np.float64)
    if p.ndim == 2:
        p = p[:, None, :]
    if cfg.method == "entropy":
        scores = entropy_weighted_scores(a, p, logit_scale)
    else:
        mean = p.mean(axis=1)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True)
        scores = a @ mean.T
    probs = softmax(logit_scale * scores)
    if cfg.method == "sinkhorn":
        return sinkhorn_probs(probs, cfg.prior, cfg.prior_strength)
    if cfg.method == "label_propagation":
        probs = label_propagation(probs, a, cfg.lp_k, cfg.lp_alpha)
    if cfg.method == "claptune":
        probs = label_propagation(probs, a, cfg.chain_k, cfg.lp_alpha)
    if cfg.method == "gaussian_em":
        probs = gaussian_em(probs, a, cfg.em_k, cfg.em_lambda, cfg.em_iterations)
    if cfg.method == "claptune":
        probs = sinkhorn_probs(probs, cfg.prior, cfg.prior_strength)
    return probs


@dataclass(frozen=True)
class Prediction:
    """One clip's label from class probabilities."""

    label: str
    confidence: float
    runner_up: str | None
    runner_up_confidence: float | None


def predictions_table(probs: np.ndarray, class_names: Sequence[str]) -> list[Prediction]:
    """Per row of ``probs`` (N, C): its most probable class (ties: lower index), that
    probability, and the second class with its probability."""
    p = np.asarray(probs, np.float64)
    order = np.argsort(-p, axis=1, kind="stable")
    out = []
    for i, row in enumerate(order):
        second = row[1] if p.shape[1] > 1 else None
        out.append(
            Prediction(
                label=class_names[row[0]],
                confidence=float(p[i, row[0]]),
                runner_up=None if second is None else class_names[second],
                runner_up_confidence=None if second is None else float(p[i, second]),
            )
        )
    return out


PREDICTION_COLUMNS = ("path", "label", "confidence", "runner_up", "runner_up_confidence")


def write_predictions(
    path: str | Path, items: Sequence[str], probs: np.ndarray, class_names: Sequence[str]
) -> Path:
    """``path`` (predictions.csv): one row per clip of ``items``, columns
    ``PREDICTION_COLUMNS`` (probabilities with 4 decimals); file names that are not valid UTF-8
    are written escaped (``claptune.errors.printable``). Written to a temporary file, then
    renamed, so a reader never sees half a table."""
    import csv
    import os

    from claptune.errors import printable

    path = Path(path)
    if len(items) != len(probs):
        raise ValueError(f"{len(items)} clips for {len(probs)} rows of probabilities")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(PREDICTION_COLUMNS)
        for item, row in zip(items, predictions_table(probs, class_names), strict=True):
            writer.writerow(
                [
                    printable(item),
                    row.label,
                    f"{row.confidence:.4f}",
                    row.runner_up or "",
                    "" if row.runner_up_confidence is None else f"{row.runner_up_confidence:.4f}",
                ]
            )
    os.replace(tmp, path)
    return path


__all__ = [
    "DEFAULT_TRANSDUCTION",
    "PREDICTION_COLUMNS",
    "write_predictions",
    "TRANSDUCTIONS",
    "Prediction",
    "TransductionConfig",
    "entropy_prompt_weights",
    "entropy_weighted_scores",
    "gaussian_em",
    "knn_graph",
    "knn_indices",
    "label_propagation",
    "predictions_table",
    "sinkhorn_probs",
    "softmax",
    "transduce",
]
