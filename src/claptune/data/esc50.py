"""ESC-50 (K. J. Piczak, ACM MM 2015): 2000 clips of 5 s, 50 classes, 5 folds.

Layout: ``meta/esc50.csv`` (columns ``filename,fold,target,category,...``) and ``audio/``.
The download is the GitHub archive of the repository. GitHub generates branch archives on
the fly, so they are not byte-stable and no checksum can be pinned (soundata records md5
70aba3bada37d2674b8f6cd5afd5f065 for one snapshot); the unpacked data are checked instead:
every clip the metadata lists must be present. A re-encoded copy (e.g. FLAC files whose
metadata still names ``.wav``) is read through ``resolve_audio``.
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

REMOTES = (Remote("https://github.com/karolpiczak/ESC-50/archive/master.zip", "ESC-50-master.zip"),)
META = "meta/esc50.csv"


def load_esc50(
    root: str | Path | None = None, download: bool = False, progress: bool = True
) -> ClassificationDataset:
    """ESC-50 from ``root`` (the folder holding ``meta/`` and ``audio/``, or its parent)."""
    folder = locate("esc50", root, META, ["ESC-50-master"], REMOTES, download, progress)
    meta = folder / META
    rows = read_csv(meta, ["filename", "fold", "target", "category"])
    by_target: dict[int, str] = {}
    for row in rows:
        target = parse_int(row["target"], "target", meta)
        if by_target.setdefault(target, row["category"]) != row["category"]:
            raise ClaptuneError(
                f"{meta}: target {target} names two categories "
                f"({by_target[target]!r}, {row['category']!r})"
            )
    # classes ordered by ESC-50's own target index; a subset keeps only the classes it holds
    order = [by_target[t] for t in sorted(by_target)]
    labels, class_names = index_labels([r["category"] for r in rows], order)
    items = [resolve_audio(folder / "audio" / r["filename"]) for r in rows]
    if download:
        missing = [p for p in items if not p.exists()]
        if missing:
            raise ClaptuneError(
                f"ESC-50 at {folder} lacks {len(missing)} listed clips "
                f"(first: {missing[0]}); delete it and download again"
            )
    folds = [parse_int(r["fold"], "fold", meta) for r in rows]
    # clips cut from one Freesound recording share its src_file (several takes A, B, ...)
    groups = [r["src_file"] for r in rows] if all(r.get("src_file") for r in rows) else None
    return ClassificationDataset("esc50", items, labels, class_names, folds, groups)
