"""The class head a saved model carries: audio prototypes of its task's classes.

``claptune.evaluate.prototypes`` fits it (``fit_class_head``: each class's probability-weighted
mean of unlabeled clips' audio embeddings, after InMaP, NeurIPS 2023); this module holds what a
model folder stores and what scoring needs, below the evaluation stage so that ``load_model``
can attach it: ``ClassHead`` (the prototypes, the weight, how they were fitted), its file
``HEAD_FILE`` beside the weights, and the classifier it makes from a prompt classifier:

    row_c = normalise(text_c + weight * mean_c)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.textfiles import clean_class_name

HEAD_FILE = "class_head.safetensors"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit length (a zero row stays zero), in float64."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _key(name: str) -> str:
    """A class name as heads match it: cleaned (``dog_bark`` -> ``dog bark``) and casefolded."""
    return clean_class_name(name).casefold()


@dataclass(frozen=True, eq=False)  # compared by identity: it holds an array
class ClassHead:
    """Audio prototypes of ``class_names`` and their ``weight`` against the text classifier."""

    class_names: tuple[str, ...]
    means: np.ndarray  # (C, D) float32 unit rows (zero for a class no clip was assigned)
    weight: float
    n_clips: int  # clips the prototypes were fitted on
    transduction: str  # the transduction that assigned them

    def rows(self, class_names: Sequence[str]) -> np.ndarray:
        """(C', D) the prototype of each of ``class_names`` (matched by cleaned name, any case),
        a zero row for a class the head does not hold."""
        index = {_key(c): i for i, c in enumerate(self.class_names)}
        out = np.zeros((len(class_names), self.means.shape[1]), np.float64)
        for j, name in enumerate(class_names):
            i = index.get(_key(name))
            if i is not None:
                out[j] = self.means[i]
        return out

    def holds(self, class_names: Sequence[str]) -> list[str]:
        """The classes of ``class_names`` the head has a prototype for."""
        rows = self.rows(class_names)
        return [c for c, r in zip(class_names, rows, strict=True) if np.any(r)]

    def covers(self, class_names: Sequence[str]) -> bool:
        """Whether the head holds every one of ``class_names``. Only then is it applied by
        ``claptune zeroshot`` and ``evaluate_zeroshot``: moved rows sit nearer the audio than
        unmoved ones, so a head over some of the classes would draw clips to them."""
        return len(self.holds(class_names)) == len(class_names)

    def classifier(self, text_classifier: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        """(C', D) float32: ``text_classifier`` (rows in ``class_names`` order) with each row the
        head holds moved towards its prototype and renormalised; other rows unchanged."""
        text = unit_rows(text_classifier)
        if text.ndim != 2 or len(text) != len(class_names):
            raise ValueError(
                f"a classifier of shape {text.shape} for {len(class_names)} class names"
            )
        if text.shape[1] != self.means.shape[1]:
            raise ValueError(
                f"the class head holds {self.means.shape[1]}-d prototypes for a "
                f"{text.shape[1]}-d classifier: it belongs to another model"
            )
        return unit_rows(text + self.weight * self.rows(class_names)).astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        """``directory/HEAD_FILE``: the prototypes, with the rest as safetensors metadata."""
        from safetensors.numpy import save_file

        path = Path(directory) / HEAD_FILE
        meta = {
            "class_names": json.dumps(list(self.class_names)),
            "weight": repr(self.weight),
            "n_clips": str(self.n_clips),
            "transduction": self.transduction,
        }
        save_file({"means": np.ascontiguousarray(self.means, np.float32)}, str(path), meta)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ClassHead | None:
        """The head saved in ``directory`` (None when there is none)."""
        path = Path(directory) / HEAD_FILE
        if not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            means = f.get_tensor("means")
        return cls(
            class_names=tuple(json.loads(meta["class_names"])),
            means=np.asarray(means, np.float32),
            weight=float(meta["weight"]),
            n_clips=int(meta["n_clips"]),
            transduction=meta.get("transduction", "claptune"),
        )


def head_summary(directory: str | Path) -> str | None:
    """One line on the class head saved in ``directory`` (for its model card); None if none."""
    head = ClassHead.load(directory)
    if head is None:
        return None
    return (
        f"{HEAD_FILE}: audio prototypes of {len(head.class_names)} classes from "
        f"{head.n_clips} unlabeled clips by {head.transduction} transduction, weight "
        f"{head.weight:g}; claptune zeroshot scores these classes with it"
    )


__all__ = ["HEAD_FILE", "ClassHead", "head_summary", "unit_rows"]
