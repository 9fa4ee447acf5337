"""The two shapes data takes in claptune, and helpers every reader shares.

- ``ClassificationDataset``: labelled clips of a target task (items, integer labels, class
  names, optional cross-validation folds); only evaluation ever looks at the labels.
- ``PairedCorpus``: audio clips with one caption each (the replay/paired corpus).
- ``UnlabeledClips``: a target task's clips and class names with no labels at all (a user's
  own recordings, ``claptune adapt``).

Readers keep class names exactly as the data set spells them (``dog_bark``); turning them into
words for prompts is the job of ``claptune.evaluate.zeroshot.clean_class_name``. Every class
list (a data set's, a ``--classes`` file, ``AdaptConfig.class_names``) goes through
``check_class_names``: two names that differ only in case, ``_``, ``/`` or spaces (``dog`` and
``Dog``, ``church_bells`` and ``church bells``) would get identical prompts, so they are an error
naming both spellings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from claptune.audio import AUDIO_EXTENSIONS
from claptune.errors import ClaptuneError


@dataclass
class ClassificationDataset:
    """Labelled clips. ``labels[i]`` indexes ``class_names``; ``folds[i]`` is the clip's
    cross-validation fold (None when the data set has no folds); ``groups[i]`` names the source
    recording the clip was cut from (ESC-50's ``src_file``, UrbanSound8K's ``fsID``; None when
    the data set does not say), so that splits can keep one recording's clips on one side."""

    name: str
    items: list[Path]
    labels: np.ndarray  # (N,) int64
    class_names: list[str]
    folds: np.ndarray | None = None  # (N,) int64
    groups: list[str] | None = None  # (N,) source recording of each clip

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.shape != (len(self.items),):
            raise ValueError(f"{len(self.items)} items but labels of shape {self.labels.shape}")
        if len(self.labels) and (
            self.labels.min() < 0 or self.labels.max() >= len(self.class_names)
        ):
            raise ValueError("labels must index class_names")
        if self.folds is not None:
            self.folds = np.asarray(self.folds, dtype=np.int64)
            if self.folds.shape != self.labels.shape:
                raise ValueError("folds must have one entry per item")
        if self.groups is not None:
            self.groups = [str(g) for g in self.groups]
            if len(self.groups) != len(self.items):
                raise ValueError("groups must have one entry per item")

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int] | np.ndarray) -> ClassificationDataset:
        """The clips at ``indices`` (same class list, so label indices stay comparable)."""
        idx = np.asarray(indices, dtype=np.int64)
        return ClassificationDataset(
            name=self.name,
            items=[self.items[i] for i in idx.tolist()],
            labels=self.labels[idx],
            class_names=list(self.class_names),
            folds=None if self.folds is None else self.folds[idx],
            groups=None if self.groups is None else [self.groups[i] for i in idx.tolist()],
        )

    def select_folds(self, folds: Sequence[int]) -> ClassificationDataset:
        """The clips of the given folds; an unknown fold is a ``ClaptuneError``."""
        if self.folds is None:
            raise ClaptuneError(f"data set {self.name} has no folds; drop the fold selection")
        available = sorted(set(self.folds.tolist()))
        missing = sorted(set(folds) - set(available))
        if missing:
            raise ClaptuneError(
                f"data set {self.name} has no fold {', '.join(map(str, missing))}; "
                f"folds: {', '.join(map(str, available))}"
            )
        return self.subset(np.flatnonzero(np.isin(self.folds, list(folds))))


@dataclass
class UnlabeledClips:
    """Clips of a target task and the names of its classes, with no label for any clip."""

    name: str
    items: list[Path]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int] | np.ndarray) -> UnlabeledClips:
        return UnlabeledClips(
            self.name, [self.items[i] for i in np.asarray(indices).tolist()], list(self.class_names)
        )


@dataclass
class PairedCorpus:
    """Clips with one caption each: ``captions[i]`` describes ``audio[i]``; ``sources[i]``
    names where the clip comes from (used to report and stratify, never to train)."""

    audio: list[Path]
    captions: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.audio)


def default_data_dir() -> Path:
    """Where downloads go: ``$CLAPTUNE_DATA`` or ``~/.cache/claptune/data``."""
    env = os.environ.get("CLAPTUNE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "claptune" / "data"


def read_csv(path: Path, required: Sequence[str], delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV with a header; a missing file or column is a ``ClaptuneError`` naming it."""
    if not path.is_file():
        raise ClaptuneError(f"metadata file not found: {path}")
    from claptune.textfiles import csv_reader

    reader = csv_reader(path, what="metadata file", delimiter=delimiter)
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in required if c not in columns]
    if missing:
        raise ClaptuneError(
            f"{path} has no column {', '.join(map(repr, missing))}; "
            f"columns: {', '.join(columns) or '(none)'}"
        )
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise ClaptuneError(f"{path} lists no clips")
    return rows


def resolve_audio(path: Path) -> Path:
    """``path`` if it exists, else a file with the same stem and another audio extension
    (a set re-encoded to FLAC whose metadata still names .wav), else ``path`` unchanged so
    that decoding reports it missing."""
    if path.exists():
        return path
    for ext in AUDIO_EXTENSIONS:
        candidate = path.with_suffix(ext)
        if candidate.exists():
            return candidate
    return path


def class_key(name: str) -> str:
    """A class name with case, ``_``, ``/`` and runs of spaces ignored: ``Church_Bells`` and
    ``church bells`` are one class (``church bells``)."""
    return " ".join(w for w in re.split(r"[\s_/]+", name.lower()) if w)


def check_class_names(names: Sequence[str], where: str = "class names") -> None:
    """Raise ``ClaptuneError`` if two of ``names`` are one class by ``class_key`` (or one
    name is given twice), naming both spellings."""
    first: dict[str, str] = {}
    repeated: list[str] = []
    spellings: list[str] = []
    for name in names:
        key = class_key(name)
        if not key:
            raise ClaptuneError(f"{where}: an empty class name ({name!r})")
        if key not in first:
            first[key] = name
        elif first[key] == name:
            repeated.append(repr(name))
        else:
            spellings.append(f"{first[key]!r} and {name!r}")
    problems = []
    if repeated:
        problems.append(f"given twice: {', '.join(dict.fromkeys(repeated))}")
    if spellings:
        problems.append(
            f"one class spelled two ways (case, '_', '/' and spaces are ignored): "
            f"{'; '.join(spellings)}; keep one spelling"
        )
    if problems:
        raise ClaptuneError(f"{where}: {'; '.join(problems)}")


def index_labels(
    names: Sequence[str], order: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Integer labels for string ``names``; classes in ``order`` if given, else sorted. Class
    names that ``check_class_names`` finds to be one class are an error."""
    class_names = list(order) if order is not None else sorted(set(names))
    check_class_names(class_names, "the data set's class names")
    lookup = {c: i for i, c in enumerate(class_names)}
    return np.array([lookup[n] for n in names], dtype=np.int64), class_names


def parse_int(value: str, what: str, where: Path) -> int:
    try:
        return int(value)
    except ValueError:
        raise ClaptuneError(f"{where}: {what} {value!r} is not an integer") from None
