"""Transfer check: the target's classes on recordings from *other sources*.

The held-out part of the paired corpus (never replayed, never curated) holds clips whose
captions name a target class ("a dog barking", "birds chirping in the morning"). Those clips
come from different recordings, libraries and microphones than the target data set, so
zero-shot accuracy on them, teacher against students, tells whether a gain on the target's
test parts carries over to the classes themselves or only to the target's recordings.

A clip counts when its caption contains every word of exactly one class name (lowercase,
plural "s" ignored: "birds chirping" names "chirping_birds"); its label comes from the caption,
not from any annotation. The set is whatever the corpus happens to hold: small and skewed
towards a few classes, so it reports clip accuracy and the mean over the classes present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from claptune.report.schema import Transfer, TransferScores, TransferSpreads
from claptune.stats import mean_spread


def _words(text: str) -> set[str]:
    return {
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in re.findall(r"[a-z]+", text.lower())
    }


def match_captions(
    captions: Sequence[str], class_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(caption indices, class indices) of the captions that name exactly one class."""
    class_words = [_words(c.replace("_", " ")) for c in class_names]
    rows, labels = [], []
    for i, caption in enumerate(captions):
        words = _words(caption)
        hits = [c for c, cw in enumerate(class_words) if cw and cw <= words]
        if len(hits) == 1:
            rows.append(i)
            labels.append(hits[0])
    return np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)


def _scores(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from claptune.evaluate.metrics import accuracy, class_mean_accuracy

    return accuracy(pred, labels), class_mean_accuracy(pred, labels)


def summarize_transfer(
    labels: np.ndarray,
    class_names: Sequence[str],
    pred_before: np.ndarray,
    preds_after: Sequence[np.ndarray],
    items: Sequence[str],
) -> Transfer | None:
    """Clip and class-mean accuracy before (teacher) and after (mean ± spread over runs)."""
    if not len(labels):
        return None
    before = _scores(pred_before, labels)
    after = [_scores(p, labels) for p in preds_after]
    counts = {class_names[c]: int((labels == c).sum()) for c in np.unique(labels)}
    return Transfer(
        n_clips=int(len(labels)),
        n_classes=len(counts),
        clips_per_class=counts,
        before=TransferScores(accuracy=before[0], class_mean_accuracy=before[1]),
        after=TransferSpreads(
            accuracy=mean_spread([a[0] for a in after]),
            class_mean_accuracy=mean_spread([a[1] for a in after]),
        ),
        items=list(items),
    )


__all__ = ["match_captions", "summarize_transfer"]
