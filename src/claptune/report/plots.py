"""Figures of the report as PNG bytes: per-class before/after bars, confusion matrices, and the
ablation comparison. matplotlib runs on the Agg backend; nothing is shown on screen."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def per_class_bars(
    class_names: Sequence[str],
    before: Sequence[float],
    after: Sequence[float],
    before_err: Sequence[float] | None = None,
    after_err: Sequence[float] | None = None,
) -> bytes:
    """Grouped horizontal bars of per-class accuracy (0..1) before and after, with error bars."""
    plt = _pyplot()
    n = len(class_names)
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.22 * n + 1.0)))
    h = 0.4
    ax.barh(y - h / 2, np.asarray(before) * 100, h, xerr=None if before_err is None else
            np.asarray(before_err) * 100, label="before", color="#9aa5b1", error_kw={"lw": 0.6})
    ax.barh(y + h / 2, np.asarray(after) * 100, h, xerr=None if after_err is None else
            np.asarray(after_err) * 100, label="after", color="#2f7ed8", error_kw={"lw": 0.6})
    ax.set_yticks(y, [str(c) for c in class_names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test-part accuracy (%), mean ± std over runs")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def confusion_plot(confusion: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class)."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(class_names)
    size = max(4.0, 0.16 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(n)
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=90, fontsize=6)
    ax.set_yticks(ticks, [str(c) for c in class_names], fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def ablation_plot(labels: Sequence[str], means: Sequence[float], stds: Sequence[float],
                  baseline: float | None = None) -> bytes:
    """Bars of mean test-part accuracy (0..1) per configuration with std error bars."""
    plt = _pyplot()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(labels) + 1.5), 3.6))
    colors = ["#2f7ed8" if "soft" in lab else "#9aa5b1" for lab in labels]
    ax.bar(x, np.asarray(means) * 100, yerr=np.asarray(stds) * 100, color=colors, capsize=3)
    if baseline is not None:
        ax.axhline(baseline * 100, color="#c0392b", lw=1, ls="--", label="before (teacher)")
        ax.legend(fontsize=8)
    ax.set_xticks(x, list(labels), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test-part accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def histogram_plot(edges: Sequence[float], counts: Sequence[int], counts_kept: Sequence[int],
                   xlabel: str, threshold: float | None = None) -> bytes:
    """Bars of counts per bin, the kept part drawn over them, and the threshold as a line."""
    plt = _pyplot()
    edges = np.asarray(edges, dtype=np.float64)
    widths = np.diff(edges)
    fig, ax = plt.subplots(figsize=(5.5, 2.8))
    ax.bar(edges[:-1], counts, widths, align="edge", color="#9aa5b1", label="all clips")
    ax.bar(edges[:-1], counts_kept, widths, align="edge", color="#2f7ed8", label="curated")
    if threshold is not None:
        ax.axvline(threshold, color="#c0392b", lw=1, ls="--", label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def class_count_bars(class_names: Sequence[str], series: dict[str, Sequence[float]],
                     xlabel: str) -> bytes:
    """Grouped horizontal bars of one count (or share) per class for each named series."""
    plt = _pyplot()
    n, k = len(class_names), max(1, len(series))
    y = np.arange(n)
    h = 0.8 / k
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.06 * n * k + 0.2 * n + 1.0)))
    colors = ["#9aa5b1", "#2f7ed8", "#e67e22", "#27ae60"]
    for j, (name, values) in enumerate(series.items()):
        ax.barh(y - 0.4 + h * (j + 0.5), values, h, label=name, color=colors[j % len(colors)])
    ax.set_yticks(y, [str(c) for c in class_names], fontsize=7)
    ax.set_ylim(n - 0.5, -0.5)  # first class on top, no empty margin
    ax.set_xlabel(xlabel)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


__all__ = ["per_class_bars", "confusion_plot", "ablation_plot", "histogram_plot",
           "class_count_bars"]
