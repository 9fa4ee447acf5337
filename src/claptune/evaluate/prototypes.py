"""A class head from unlabeled clips: each class's text embedding moved towards the mean audio
embedding of the clips that transduction assigns to it.

A zero-shot classifier compares a clip with text embeddings, which sit apart from the audio
embeddings (the modality gap). Given unlabeled clips of the task, each class also has an audio
prototype: the mean of the clips labelled with it. InMaP (Qian, Xu and Hu, NeurIPS 2023,
"Intra-Modal Proxy Learning for Zero-Shot Visual Categorization with CLIP", arXiv 2310.19752)
learns such proxies in the image space from the text proxies' pseudo-labels of unlabeled target
data. Here the proxy has a closed form: the mean of the clips' L2-normalised audio embeddings,
each weighted by its class probability from ``claptune.evaluate.transductive`` (the class means
of TransCLIP's mixture, arXiv 2406.01837), renormalised and added to the text classifier:

    row_c = normalise(text_c + weight * normalise(sum_i q_ic x_i))

The head is fitted once on a pool of clips and then classifies any clip alone, clips it never
saw included: ``improve`` fits it on each split's adaptation pool and scores the test part,
and saves the one fitted on every clip beside ``RUN/model`` (``HEAD_FILE``), where
``load_model`` attaches it and ``claptune zeroshot`` uses it when it holds every class asked for
(``ClassHead.covers``). No label is read, and the result is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.evaluate.zeroshot import clean_class_name

HEAD_FILE = "class_head.safetensors"
# weight of the audio prototypes against the text classifier; chosen on our own 8:1 class orders
# of the ESC-50 subset among 0.25-2 (bench/notes/class_head.md)
DEFAULT_HEAD_WEIGHT = 0.5
MIN_HEAD_CLIPS = 2  # fewer clips than this fit no head


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _key(name: str) -> str:
    """A class name as heads match it: cleaned (``dog_bark`` -> ``dog bark``) and casefolded."""
    return clean_class_name(name).casefold()


def class_means(audio_emb: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(C, D) unit rows: each class's mean of the L2-normalised ``audio_emb`` (N, D) weighted by
    its column of ``probs`` (N, C); a class no clip has any probability of is a zero row."""
    return _unit(np.asarray(probs, np.float64).T @ _unit(audio_emb))


@dataclass(frozen=True, eq=False)  # compared by identity: it holds an array
class ClassHead:
    """Audio prototypes of ``class_names`` and their ``weight`` against the text classifier."""

    class_names: tuple[str, ...]
    means: np.ndarray  # (C, D) float32 unit rows (zero for a class no clip was assigned)
    weight: float
    n_clips: int  # clips the prototypes were fitted on
    transduction: str  # the transduction that assigned them

    @classmethod
    def fit(
        cls,
        audio_emb: np.ndarray,
        prompt_emb: np.ndarray,
        logit_scale: float,
        class_names: Sequence[str],
        weight: float = DEFAULT_HEAD_WEIGHT,
        transduction: str = "claptune",
    ) -> ClassHead:
        """Fit on the clips ``audio_emb`` (N, D): their class probabilities by ``transduction``
        from the prompts ``prompt_emb`` (C, T, D) and ``logit_scale``, then ``class_means``."""
        from claptune.evaluate.transductive import transduce

        if len(audio_emb) < MIN_HEAD_CLIPS:
            raise ValueError(f"a class head needs at least {MIN_HEAD_CLIPS} clips")
        if not 0 <= weight < np.inf:
            raise ValueError(f"the class head's weight must be finite and at least 0, got {weight}")
        if len(prompt_emb) != len(class_names):
            raise ValueError(
                f"{len(prompt_emb)} classes of prompts for {len(class_names)} class names"
            )
        probs = transduce(audio_emb, prompt_emb, logit_scale, transduction)
        return cls(
            class_names=tuple(class_names),
            means=class_means(audio_emb, probs).astype(np.float32),
            weight=float(weight),
            n_clips=len(audio_emb),
            transduction=transduction,
        )

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
        text = _unit(text_classifier)
        if text.ndim != 2 or len(text) != len(class_names):
            raise ValueError(
                f"a classifier of shape {text.shape} for {len(class_names)} class names"
            )
        if text.shape[1] != self.means.shape[1]:
            raise ValueError(
                f"the class head holds {self.means.shape[1]}-d prototypes for a "
                f"{text.shape[1]}-d classifier: it belongs to another model"
            )
        return _unit(text + self.weight * self.rows(class_names)).astype(np.float32)

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
        f"{head.n_clips} unlabeled clips ({head.transduction} transduction), weight "
        f"{head.weight:g}; claptune zeroshot scores these classes with it"
    )


__all__ = ["DEFAULT_HEAD_WEIGHT", "HEAD_FILE", "ClassHead", "class_means", "head_summary"]
