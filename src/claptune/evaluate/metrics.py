"""Every figure that reads labels, in one place: clip accuracy, per-class accuracy, class-mean
(balanced) accuracy, the confusion matrix and pseudo-label precision. Everything else that
scores predictions (the zero-shot evaluation, improve's runs, the transfer check, adapt's
``--eval``, the report's pseudo-label precision, the benchmarks) calls these. Predictions and
labels are int class indices of the same length.
"""

from __future__ import annotations

import numpy as np


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Share of predictions equal to their label (NaN when there is none)."""
    pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel()
    return float(np.mean(pred == labels)) if labels.size else float("nan")


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) accuracy within each class (recall); NaN for a class without a clip."""
    pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel()
    hits = np.bincount(labels[pred == labels], minlength=n_classes).astype(np.float64)
    support = np.bincount(labels, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def class_mean_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of each class's accuracy (balanced
    accuracy): every class counts the same, however many clips it has."""
    pred, labels = np.asarray(pred).ravel(), np.asarray(labels).ravel()
    if labels.size == 0:
        return float("nan")
    classes, inverse = np.unique(labels, return_inverse=True)
    hits = np.bincount(inverse, weights=(pred == labels).astype(np.float64))
    return float(np.mean(hits / np.bincount(inverse)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, C) int64 counts, rows the true class, columns the predicted one."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels).ravel(), np.asarray(pred).ravel()), 1)
    return cm


def label_precision(pseudo: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple:
    """(n, correct): (C,) int64 counts of the pseudo-labels given to each class and of those
    that name the clip's true class (precision per class = correct / n)."""
    pseudo, labels = np.asarray(pseudo).ravel(), np.asarray(labels).ravel()
    n = np.bincount(pseudo, minlength=n_classes).astype(np.int64)
    correct = np.bincount(pseudo[pseudo == labels], minlength=n_classes).astype(np.int64)
    return n, correct


__all__ = [
    "accuracy",
    "class_mean_accuracy",
    "confusion_matrix",
    "label_precision",
    "per_class_accuracy",
]
