"""UrbanSound8K (J. Salamon, C. Jacoby, J. P. Bello, ACM MM 2014): 8732 clips of <= 4 s,
10 classes, 10 folds.

Layout: ``metadata/UrbanSound8K.csv`` (columns ``slice_file_name,fold,classID,class``) and
``audio/fold{n}/``. Downloaded from Zenodo record 1203745 (md5 as published there and in
soundata's index).
"""

from __future__ import annotations

from pathlib import Path

from claptune.data.dataset import (
    ClassificationDataset,
    index_labels,
    parse_int,
    read_csv,
    resolve_audio,
)
from claptune.data.remote import Remote, locate
from claptune.errors import ClaptuneError

REMOTES = (
    Remote(
        "https://zenodo.org/records/1203745/files/UrbanSound8K.tar.gz?download=1",
        "UrbanSound8K.tar.gz",
        md5="9aa69802bbf37fb986f71ec1483a196e",
    ),
)
META = "metadata/UrbanSound8K.csv"


def load_us8k(
    root: str | Path | None = None, download: bool = False, progress: bool = True
) -> ClassificationDataset:
    """UrbanSound8K from ``root`` (the folder holding ``metadata/`` and ``audio/``, or its parent)."""
    folder = locate("us8k", root, META, ["UrbanSound8K"], REMOTES, download, progress)
    meta = folder / META
    rows = read_csv(meta, ["slice_file_name", "fold", "classID", "class"])
    by_id: dict[int, str] = {}
    for row in rows:
        class_id = parse_int(row["classID"], "classID", meta)
        if by_id.setdefault(class_id, row["class"]) != row["class"]:
            raise ClaptuneError(f"{meta}: classID {class_id} names two classes")
    labels, class_names = index_labels(
        [r["class"] for r in rows], [by_id[i] for i in sorted(by_id)]
    )
    folds = [parse_int(r["fold"], "fold", meta) for r in rows]
    items = [
        resolve_audio(folder / "audio" / f"fold{f}" / r["slice_file_name"])
        for r, f in zip(rows, folds, strict=True)
    ]
    # slices of one Freesound recording share its fsID
    groups = [r["fsID"] for r in rows] if all(r.get("fsID") for r in rows) else None
    return ClassificationDataset("us8k", items, labels, class_names, folds, groups)
