"""Cross-modal retrieval metrics: recall@k in both directions, computed in blocks. This is
claptune's one definition of R@k (evaluation, the forgetting check, head pretraining).

Audio row ``i`` is paired with text row ``i`` by default; ``text_audio_index`` maps each text
to its audio for corpora with several captions per clip (AudioCaps, Clotho), and
``audio_text_index`` maps each clip to its caption for corpora whose distinct captions are
shared by several clips (captioned-sfx: "swords clashing" x15). A query's rank is the number
of wrong candidates scoring at least as high as its best right one, so ties count against the
model, as a benchmark counts them, and a constant embedding cannot look good. Scores are
computed ``block_size`` queries at a time, never as one full (N, N) matrix held twice.

Keys: ``a2t_R@k`` / ``t2a_R@k`` (0..1), ``a2t_median_rank`` / ``t2a_median_rank`` and
``a2t_mean_rank`` / ``t2a_mean_rank`` (1 = first); ``mean_recall`` averages the R@k keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def retrieval_metrics(
    audio_emb: np.ndarray,
    text_emb: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    text_audio_index: np.ndarray | None = None,
    block_size: int = 1024,
    audio_text_index: np.ndarray | None = None,
) -> dict[str, float]:
    """Recall@k and ranks for audio->text and text->audio retrieval.

    ``audio_emb`` (N_audio, D), ``text_emb`` (N_text, D), L2-normalised; at most one of
    ``text_audio_index`` (N_text,) int, each text's audio, and ``audio_text_index`` (N_audio,)
    int, each audio's text (default: text i belongs to audio i).
    """
    audio_emb = np.asarray(audio_emb, dtype=np.float32)
    text_emb = np.asarray(text_emb, dtype=np.float32)
    if len(text_emb) == 0 or len(audio_emb) == 0:
        raise ValueError("retrieval needs at least one audio and one text")
    if text_audio_index is not None and audio_text_index is not None:
        raise ValueError("pass text_audio_index or audio_text_index, not both")
    # a text and an audio match when their groups are equal
    if audio_text_index is not None:
        audio_group = _index(audio_text_index, len(audio_emb), "audio_text_index", "audio")
        text_group = np.arange(len(text_emb))
        owners, n_owners, what = audio_group, len(text_emb), "text"
    else:
        if text_audio_index is None:
            if len(audio_emb) != len(text_emb):
                raise ValueError(
                    f"{len(audio_emb)} audio rows but {len(text_emb)} text rows: "
                    "pass text_audio_index for several captions per clip"
                )
            text_audio_index = np.arange(len(text_emb))
        text_group = _index(text_audio_index, len(text_emb), "text_audio_index", "text")
        audio_group = np.arange(len(audio_emb))
        owners, n_owners, what = text_group, len(audio_emb), "audio"
    if owners.min() < 0 or owners.max() >= n_owners:
        raise ValueError(f"an index points past the last {what} row")
    if not (np.bincount(owners, minlength=n_owners) > 0).all():
        raise ValueError(f"every {what} row needs at least one match")
    a2t = _ranks(audio_emb, text_emb, audio_group, text_group, block_size)
    t2a = _ranks(text_emb, audio_emb, text_group, audio_group, block_size)
    metrics: dict[str, float] = {}
    for name, ranks in (("a2t", a2t), ("t2a", t2a)):
        for k in ks:
            metrics[f"{name}_R@{k}"] = float((ranks < k).mean())
        metrics[f"{name}_median_rank"] = float(np.median(ranks) + 1)
        metrics[f"{name}_mean_rank"] = float(ranks.mean() + 1)
    return metrics


def mean_recall(metrics: dict[str, float]) -> float:
    """The mean of every R@k of both directions: one number to select a checkpoint by."""
    return float(np.mean([v for k, v in metrics.items() if "_R@" in k]))


def _index(index, n: int, name: str, rows: str) -> np.ndarray:
    index = np.asarray(index, dtype=np.int64)
    if index.shape != (n,):
        raise ValueError(f"{name} needs one entry per {rows} row")
    return index


def _ranks(query_emb, candidate_emb, query_group, candidate_group, block_size) -> np.ndarray:
    """Per query: wrong candidates scoring at least as high as its best right one."""
    ranks = np.empty(len(query_emb), dtype=np.int64)
    for start in range(0, len(query_emb), block_size):
        stop = min(start + block_size, len(query_emb))
        scores = query_emb[start:stop] @ candidate_emb.T  # (b, N_candidates)
        positive = candidate_group[None, :] == query_group[start:stop, None]
        best = np.where(positive, scores, -np.inf).max(axis=1)
        ranks[start:stop] = ((scores >= best[:, None]) & ~positive).sum(axis=1)
    return ranks
