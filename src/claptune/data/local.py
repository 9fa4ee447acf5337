"""Your own labelled clips: a folder of class folders, or a CSV of ``path,label``.

- ``folder``: ``root/<class>/...`` — every audio file under a class folder (searched
  recursively) belongs to that class; classes are the sorted folder names.
- ``csv``: ``root`` is a CSV with a header holding ``path`` and ``label`` columns (names
  configurable) and an optional integer ``fold`` column; relative paths are resolved against
  the CSV's own folder, so the CSV and the audio can move together.
"""

from __future__ import annotations

from pathlib import Path

from claptune.audio import AUDIO_EXTENSIONS
from claptune.data.dataset import ClassificationDataset, index_labels, parse_int, read_csv
from claptune.errors import ClaptuneError, printable


def load_folder(root: str | Path | None = None) -> ClassificationDataset:
    """Clips in class folders under ``root``."""
    if root is None:
        raise ClaptuneError("the folder data set needs --root: a folder of class folders")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ClaptuneError(f"folder data set not found: {root} is not a folder")
    items: list[Path] = []
    names: list[str] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
        )
        items += files
        # a folder name that is not UTF-8 still names a class a tokenizer can read
        names += [printable(class_dir.name)] * len(files)
    if not items:
        raise ClaptuneError(
            f"no audio files in class folders under {root} "
            f"(expected {root}/<class>/<clip>{AUDIO_EXTENSIONS[0]})"
        )
    labels, class_names = index_labels(names)
    return ClassificationDataset("folder", items, labels, class_names)


def load_csv(
    root: str | Path | None = None,
    path_column: str = "path",
    label_column: str = "label",
    fold_column: str = "fold",
) -> ClassificationDataset:
    """Clips listed in the CSV ``root``."""
    if root is None:
        raise ClaptuneError("the csv data set needs --root: a CSV file with path,label columns")
    csv_path = Path(root).expanduser()
    if csv_path.is_dir():
        raise ClaptuneError(
            f"{csv_path} is a folder; the csv data set needs a CSV file "
            "(use --dataset folder for a folder of class folders)"
        )
    rows = read_csv(csv_path, [path_column, label_column])
    items = []
    for n, row in enumerate(rows, start=2):
        if not row[path_column] or not row[label_column]:
            raise ClaptuneError(f"{csv_path}:{n}: empty {path_column!r} or {label_column!r}")
        path = Path(row[path_column]).expanduser()
        items.append(path if path.is_absolute() else csv_path.parent / path)
    labels, class_names = index_labels([r[label_column] for r in rows])
    folds = None
    if fold_column in rows[0]:
        folds = [parse_int(r[fold_column], fold_column, csv_path) for r in rows]
    return ClassificationDataset("csv", items, labels, class_names, folds)
