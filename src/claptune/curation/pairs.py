"""The curated pairs table and its CSV file.

A ``Pairs`` table holds one row per (audio, text) pair with the columns of the pairs file:

    audio   the clip's path (as the embedding store or the corpus gave it)
    text    the caption or class prompt paired with it
    score   the similarity the method selected it by (see each method's docstring)
    method  du, ds, ads, a2a, pseudo or pseudo_refined
    class   the target class whose prompt the pair matched, "" where none did

``meta`` carries how the table was made (thresholds, similarity distributions); it is not
written to the CSV but to the summary. ``claptune.train`` reads the CSV (or the table itself:
it has ``audio``, ``text`` and ``classes``).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from claptune.errors import ClaptuneError, InputWarning
from claptune.textfiles import check_text_fields, read_text

COLUMNS = ("audio", "text", "score", "method", "class")


class MethodMeta(Mapping):
    """How one curation method's pairs were made: the typed record of ``Pairs.meta[method]``
    and of summary.json's ``meta``. Each method sets the fields it has, in its own order; the
    others stay unset, are not listed and are not written. Read it by attribute or as a
    mapping (``meta["threshold_value"]``, ``meta.get("prior")``); ``to_dict`` is its JSON."""

    method: str
    n_audio: int  # unpaired clips searched (du, ads, a2a)
    n_text: int  # captions searched (du; ads and a2a: the DS stage's)
    n_target: int  # target clips (a2a, pseudo)
    n_captions: int  # corpus captions scored against the prompts (ds)
    n_classes: int
    criterion: str  # pseudo's ranking: confidence or margin
    refine: str  # pseudo_refined's refinement
    logit_scale: float
    prior: str | None  # the class shares balancing aimed at (uniform, em)
    class_shares: dict[str, float] | None
    threshold: str  # as given: a cosine or "q<quantile>"
    threshold_value: float  # the raw cosine it resolved to
    max_per_class: int | None
    above_threshold: int
    dropped_by_cap: int
    clips_kept: int  # a2a: clips close enough to the target
    top_k: int | None
    text_threshold: float | None
    distribution: dict[str, Any]  # the scores seen (claptune.curation.thresholds.describe)
    duplicates_removed: int  # set by Pairs.dedup on a single method's table
    missing_audio: list[str]  # ds: corpus clips named by the manifest that do not exist

    FIELDS: ClassVar[tuple[str, ...]]

    def __init__(self, **values: Any):
        object.__setattr__(self, "_keys", [])
        for key, value in values.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self.FIELDS:
            raise KeyError(f"MethodMeta has no field {key!r}; fields: {', '.join(self.FIELDS)}")
        if key not in self._keys:
            self._keys.append(key)
        object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    def __repr__(self) -> str:
        return f"MethodMeta({', '.join(f'{k}={self[k]!r}' for k in self._keys)})"

    def update(self, **values: Any) -> None:
        for key, value in values.items():
            self[key] = value

    def copy(self) -> MethodMeta:
        return MethodMeta(**dict(self.items()))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.items())


MethodMeta.FIELDS = tuple(k for k in MethodMeta.__annotations__ if k != "FIELDS")


def meta_json(meta: Any) -> Any:
    """``Pairs.meta`` as JSON-able dicts (its ``MethodMeta`` records by ``to_dict``)."""
    if isinstance(meta, MethodMeta):
        return meta.to_dict()
    if isinstance(meta, dict):
        return {k: meta_json(v) for k, v in meta.items()}
    return meta


@dataclass
class Pairs:
    """Curated (audio, text) pairs; all columns have one entry per pair."""

    audio: list[str]
    text: list[str]
    score: np.ndarray  # (P,) float64
    method: list[str]
    classes: list[str]  # "" where no class prompt was involved
    # one method's table: its MethodMeta; a merged one (concat): {method: MethodMeta, ...} with
    # what the merge did (duplicates_removed, missing_audio, the DS stage as "ds")
    meta: dict[str, Any] | MethodMeta = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        n = len(self.audio)
        lengths = {
            "text": len(self.text),
            "score": len(self.score),
            "method": len(self.method),
            "class": len(self.classes),
        }
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"Pairs columns differ in length: audio {n}, {bad}")

    def __len__(self) -> int:
        return len(self.audio)

    @staticmethod
    def empty(meta: dict[str, Any] | None = None) -> Pairs:
        return Pairs([], [], np.zeros(0), [], [], dict(meta or {}))

    @staticmethod
    def build(
        audio: Sequence[str],
        text: Sequence[str],
        score: np.ndarray,
        method: str,
        classes: Sequence[str] | None = None,
        meta: MethodMeta | None = None,
    ) -> Pairs:
        """One method's pairs; ``classes`` defaults to "" for every pair."""
        classes = [""] * len(audio) if classes is None else [str(c) for c in classes]
        return Pairs(
            [str(a) for a in audio],
            [str(t) for t in text],
            score,
            [method] * len(audio),
            classes,
            meta.copy() if isinstance(meta, MethodMeta) else dict(meta or {}),
        )

    def subset(self, indices: Sequence[int] | np.ndarray) -> Pairs:
        idx = np.asarray(indices, dtype=np.int64)
        return Pairs(
            [self.audio[i] for i in idx],
            [self.text[i] for i in idx],
            self.score[idx],
            [self.method[i] for i in idx],
            [self.classes[i] for i in idx],
            self.meta.copy() if isinstance(self.meta, MethodMeta) else dict(self.meta),
        )

    @staticmethod
    def concat(parts: Sequence[Pairs]) -> Pairs:
        """Rows of every part in order; ``meta`` maps each part's ``meta["method"]`` to its meta."""
        meta = {p.meta["method"]: p.meta for p in parts if "method" in p.meta}
        return Pairs(
            [a for p in parts for a in p.audio],
            [t for p in parts for t in p.text],
            np.concatenate([p.score for p in parts]) if parts else np.zeros(0),
            [m for p in parts for m in p.method],
            [c for p in parts for c in p.classes],
            meta,
        )

    def dedup(self) -> Pairs:
        """One row per identical (audio, text): the highest-scoring one (the first on ties),
        rows kept in their original order."""
        best: dict[tuple[str, str], int] = {}
        for i, key in enumerate(zip(self.audio, self.text, strict=True)):
            j = best.get(key)
            if j is None or self.score[i] > self.score[j]:
                best[key] = i
        kept = self.subset(sorted(best.values()))
        kept.meta["duplicates_removed"] = len(self) - len(kept)
        return kept

    def counts(self, column: str) -> dict[str, int]:
        """Pairs per value of ``method`` or ``class``, largest first, then by name."""
        values = {"method": self.method, "class": self.classes}[column]
        uniq, n = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
        return {
            str(u): int(c)
            for u, c in sorted(zip(uniq, n, strict=True), key=lambda t: (-t[1], t[0]))
        }

    def method_counts(self) -> dict[str, int]:
        """Pairs per method by name, then ``"total"`` (the one count every report shows)."""
        return {**dict(sorted(self.counts("method").items())), "total": len(self)}

    def class_counts(self) -> dict[str, int]:
        """Pairs per named class (pairs without a class, such as du's, left out)."""
        return {c: n for c, n in self.counts("class").items() if c}

    def class_shares(self) -> dict[str, float] | None:
        """The class shares a balancing curation method aimed at (estimated without labels),
        from the methods' meta; None when no method balanced."""
        for meta in self.meta.values():
            if isinstance(meta, Mapping) and meta.get("class_shares"):
                return dict(meta["class_shares"])
        return None


def write_pairs(pairs: Pairs, path: str | os.PathLike) -> Path:
    """Write the CSV (columns ``audio,text,score,method,class``); refuses an empty table, so
    that a threshold that kept nothing never leaves a silently empty pairs file."""
    path = Path(path)
    if len(pairs) == 0:
        raise ClaptuneError(f"no pairs to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in zip(
            pairs.audio, pairs.text, pairs.score.tolist(), pairs.method, pairs.classes, strict=True
        ):
            writer.writerow(row)
    os.replace(tmp, path)
    return path


def read_pairs(path: str | os.PathLike) -> Pairs:
    """The one reader of pairs files, for curation and training alike.

    ``path`` is a pairs CSV (``audio`` and ``text`` required, a corpus's ``path``/``caption``
    columns read as such; a missing ``score`` reads as NaN, a missing ``method`` or ``class``
    as "") or a captioned-corpus folder (its manifest.csv,
    ``claptune.data.load_captioned_corpus``). Path rule: a relative audio path is read as
    written when that file exists (relative to the working directory, as ``claptune curate``
    writes the paths it was given), else relative to the CSV's folder when it exists there
    (a manifest's rule), else as written.
    """
    path = Path(path)
    if path.is_dir():
        from claptune.data import load_captioned_corpus

        corpus = load_captioned_corpus(path)
        n = len(corpus.audio)
        return Pairs(
            [str(a) for a in corpus.audio],
            list(corpus.captions),
            np.full(n, np.nan),
            [""] * n,
            [""] * n,
        )
    if not path.is_file():
        raise ClaptuneError(f"pairs file {path} not found")
    # a spreadsheet's byte-order mark is not part of the first column's name; a file name
    # that is not UTF-8 reads back as the bytes written
    content = read_text(path, what="pairs file", names_as_bytes=True)
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = reader.fieldnames or []
    audio_col = next((c for c in ("audio", "path") if c in columns), None)
    text_col = next((c for c in ("text", "caption") if c in columns), None)
    if audio_col is None or text_col is None:
        missing = [c for c, found in (("audio", audio_col), ("text", text_col)) if not found]
        raise ClaptuneError(
            f"pairs file {path} lacks column(s) {', '.join(missing)} (has: {', '.join(columns)})"
        )
    rows = list(reader)
    if not rows:
        raise ClaptuneError(f"pairs file {path} has no pairs")
    # like the corpus reader: an empty field is refused, naming its line; a row repeating an
    # earlier (audio, text) pair is merged into it with one warning
    seen: set[tuple[str, str]] = set()
    kept, duplicated = [], []
    for line, row in enumerate(rows, start=2):
        audio, text = (row[audio_col] or "").strip(), (row[text_col] or "").strip()
        if not audio or not text:
            raise ClaptuneError(f"{path}:{line}: empty {'audio' if not audio else 'text'}")
        if not _is_utf8(text):  # a file name may be any bytes; a caption must be text
            check_text_fields(path.read_bytes(), f"{path}:{line}", [text], "pairs file")
        row[audio_col], row[text_col] = audio, text
        if (audio, text) in seen:
            duplicated.append(line)
        else:
            seen.add((audio, text))
            kept.append(row)
    if duplicated:
        warnings.warn(
            f"{path}: {len(duplicated)} duplicated rows (same audio and text as an "
            f"earlier row) merged, first at line {duplicated[0]}",
            InputWarning,
            stacklevel=2,
        )
    rows = kept
    try:
        score = [float(r["score"]) if r.get("score") not in (None, "") else np.nan for r in rows]
    except ValueError as err:
        raise ClaptuneError(f"pairs file {path}: bad score ({err})") from None
    return Pairs(
        [_resolve(r[audio_col], path.parent) for r in rows],
        [r[text_col] for r in rows],
        np.array(score, dtype=np.float64),
        [r.get("method") or "" for r in rows],
        [r.get("class") or "" for r in rows],
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # surrogate-escaped bytes that were not UTF-8
        return False
    return True


def _resolve(audio: str, base: Path) -> str:
    p = Path(audio)
    if p.is_absolute() or p.exists() or not (base / p).exists():
        return audio
    return str(base / p)


__all__ = ["COLUMNS", "Pairs", "read_pairs", "write_pairs"]
