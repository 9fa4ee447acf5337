"""Figures of a zero-shot evaluation: the confusion matrix as a PNG.

Uses matplotlib's object API with an Agg canvas, so nothing touches pyplot's global state or
needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_confusion(
    confusion: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Write the row-normalised confusion matrix (rows: true class, columns: predicted) to
    ``path`` as a PNG; the diagonal is each class's accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1, keepdims=True)
    rates = np.divide(confusion, support, out=np.zeros_like(confusion), where=support > 0)
    n = len(class_names)
    size = min(22.0, max(4.5, 0.28 * n + 2.5))
    fig = Figure(figsize=(size, size * 0.9))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    font = 8 if n <= 20 else 6 if n <= 40 else 5
    ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=font)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=9)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if confusion[i, j]:
                    ax.text(
                        j,
                        i,
                        int(confusion[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="black" if rates[i, j] > 0.5 else "white",
                    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
