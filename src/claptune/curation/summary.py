"""What a curation run produced: pairs per method and class, score statistics, the
thresholds and similarity distributions each method saw (``summary.json``), and a histogram of
the kept scores per method (``scores.png``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from claptune.curation.pairs import Pairs, meta_json


def summarize(pairs: Pairs, out_dir: str | os.PathLike | None = None) -> dict:
    """The summary dict; with ``out_dir``, also write ``summary.json`` and ``scores.png``."""
    summary = {
        "n_pairs": len(pairs),
        "n_audio": len(set(pairs.audio)),
        "n_text": len(set(pairs.text)),
        "per_method": pairs.counts("method"),
        "per_class": {k: v for k, v in pairs.counts("class").items() if k},
        "without_class": int(sum(1 for c in pairs.classes if not c)),
        "score": {
            m: _stats(pairs.score[np.asarray(pairs.method) == m]) for m in pairs.counts("method")
        },
        "meta": meta_json(pairs.meta),
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
        plot_scores(pairs, out_dir / "scores.png")
    return summary


def _stats(scores: np.ndarray) -> dict:
    if len(scores) == 0:
        return {}
    return {
        "min": float(scores.min()),
        "median": float(np.median(scores)),
        "mean": float(scores.mean()),
        "max": float(scores.max()),
    }


def plot_scores(pairs: Pairs, path: str | os.PathLike) -> Path:
    """Histogram of the kept scores, one panel per method (methods score on different scales:
    cosines, probabilities, margins)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = list(pairs.counts("method")) or ["(none)"]
    fig = Figure(figsize=(4.5 * len(methods), 3.2), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, method in zip(fig.subplots(1, len(methods), squeeze=False)[0], methods, strict=True):
        scores = pairs.score[np.asarray(pairs.method) == method]
        ax.hist(scores, bins=min(50, max(5, len(scores) // 10)), color="#4c72b0")
        ax.set_title(f"{method}: {len(scores):,} pairs")
        ax.set_xlabel("score")
        ax.set_ylabel("pairs")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


__all__ = ["plot_scores", "summarize"]
