"""Figures of the report as PNG bytes: per-class before/after bars, confusion matrices (each
with a colour bar) and their after-minus-before difference, class priors, and the
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


def _legend_above(ax, ncol: int) -> None:
    """The legend in one row above the axes, where it can never cover a bar or a line."""
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=ncol,
        fontsize=8,
        frameon=False,
        borderaxespad=0.3,
    )


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
    ax.barh(
        y - h / 2,
        np.asarray(before) * 100,
        h,
        xerr=None if before_err is None else np.asarray(before_err) * 100,
        label="before",
        color="#9aa5b1",
        error_kw={"lw": 0.6},
    )
    ax.barh(
        y + h / 2,
        np.asarray(after) * 100,
        h,
        xerr=None if after_err is None else np.asarray(after_err) * 100,
        label="after",
        color="#2f7ed8",
        error_kw={"lw": 0.6},
    )
    ax.set_yticks(y, [str(c) for c in class_names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test-part accuracy (%), mean ± std over runs")
    ax.set_xlim(0, 100)
    _legend_above(ax, 2)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _matrix_axes(n: int):
    """A square figure big enough that each of ``n`` class names stays legible (about 0.26 inch
    per class, labels at 9 pt: a 50-class matrix is about 15 inches wide)."""
    plt = _pyplot()
    size = max(4.5, 0.26 * n + 2.5)
    return plt.subplots(figsize=(size + 1.0, size))  # + 1 inch for the colour bar


def _label_matrix(fig, ax, image, class_names: Sequence[str], title: str, bar_label: str) -> None:
    n = len(class_names)
    ticks = np.arange(n)
    font = 10 if n <= 30 else 9  # the page shows the figure ~1500 px wide: ~8 px letters
    ax.set_xticks(ticks, [str(c) for c in class_names], rotation=90, fontsize=font)
    ax.set_yticks(ticks, [str(c) for c in class_names], fontsize=font)
    # thin grid lines between cells let the eye follow a row across a large matrix
    ax.set_xticks(ticks[:-1] + 0.5, minor=True)
    ax.set_yticks(ticks[:-1] + 0.5, minor=True)
    ax.grid(which="minor", color="#e5e9ee", lw=0.4)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(bar_label)


def _row_shares(confusion: np.ndarray) -> np.ndarray:
    cm = np.asarray(confusion, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def confusion_plot(confusion: np.ndarray, class_names: Sequence[str], title: str) -> bytes:
    """Row-normalised confusion matrix (rows: true class, columns: predicted class)."""
    fig, ax = _matrix_axes(len(class_names))
    image = ax.imshow(_row_shares(confusion) * 100, cmap="Blues", vmin=0, vmax=100)
    _label_matrix(fig, ax, image, class_names, title, "% of the true class's test clips")
    return _png(fig)


def confusion_diff_plot(
    before: np.ndarray, after: np.ndarray, class_names: Sequence[str], title: str
) -> bytes:
    """After minus before of the row-normalised confusion matrices, in percentage points, on a
    diverging map centred on 0 (red: more clips land in that cell after training; on the
    diagonal red is a gain, off it a new confusion)."""
    diff = (_row_shares(after) - _row_shares(before)) * 100
    limit = max(1.0, float(np.abs(diff).max()))  # symmetric, so white is always "no change"
    fig, ax = _matrix_axes(len(class_names))
    image = ax.imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit)
    _label_matrix(
        fig, ax, image, class_names, title, "after − before (percentage points of the true class)"
    )
    return _png(fig)


def prior_bars(
    class_names: Sequence[str],
    estimated: dict[str, float],
    true: dict[str, float] | None,
    split: int,
) -> bytes:
    """Estimated class shares of one split's adaptation pool beside the true ones (if known)."""
    series = {"estimated (no label read)": [100 * estimated.get(c, 0.0) for c in class_names]}
    if true is not None:
        series["true (scored after the run)"] = [100 * true.get(c, 0.0) for c in class_names]
    return class_count_bars(class_names, series, f"share of split {split}'s adaptation pool (%)")


def ablation_plot(
    labels: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    baseline: float | None = None,
) -> bytes:
    """Bars of mean test-part accuracy (0..1) per configuration with std error bars (the spread
    over runs, splits included: not an interval of the mean), soft-loss rows in blue."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(labels) + 1.5), 3.6))
    colors = ["#2f7ed8" if "soft" in lab else "#9aa5b1" for lab in labels]
    ax.bar(x, np.asarray(means) * 100, yerr=np.asarray(stds) * 100, color=colors, capsize=3)
    handles = [Patch(color="#9aa5b1", label="hard loss"), Patch(color="#2f7ed8", label="soft loss")]
    if baseline is not None:
        handles.append(
            ax.axhline(baseline * 100, color="#c0392b", lw=1, ls="--", label="before (teacher)")
        )
    ax.legend(
        handles=handles,
        loc="lower left",
        bbox_to_anchor=(0.0, 1.0),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        borderaxespad=0.3,
    )
    ax.set_xticks(x, list(labels), rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test-part accuracy (%)\nmean ± std over runs", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def histogram_plot(
    edges: Sequence[float],
    counts: Sequence[int],
    counts_kept: Sequence[int],
    xlabel: str,
    threshold: float | None = None,
) -> bytes:
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
    _legend_above(ax, 3)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def class_count_bars(
    class_names: Sequence[str], series: dict[str, Sequence[float]], xlabel: str
) -> bytes:
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
    _legend_above(ax, k)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


__all__ = [
    "per_class_bars",
    "confusion_plot",
    "confusion_diff_plot",
    "prior_bars",
    "ablation_plot",
    "histogram_plot",
    "class_count_bars",
]
