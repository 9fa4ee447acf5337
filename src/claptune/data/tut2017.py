"""TUT Acoustic Scenes 2017 (DCASE 2017 task 1): 15 acoustic scenes, 10 s clips.

Two sets, each unpacking into its own folder:
- ``TUT-acoustic-scenes-2017-development/`` (4680 clips): ``meta.txt`` (``audio/x.wav<TAB>scene
  <TAB>location``) and ``evaluation_setup/fold{k}_evaluate.txt`` giving folds 1-4;
- ``TUT-acoustic-scenes-2017-evaluation/`` (1620 clips): ``meta.txt`` or
  ``evaluation_setup/evaluate.txt`` with the scene labels. Its clips carry fold 0, so
  ``folds=[0]`` selects the evaluation set and ``folds=[1, 2, 3, 4]`` the development set.

``root`` may be the folder holding both set folders, or one set folder. Downloads come from
Zenodo records 400515 (development) and 1040168 (evaluation); the md5 of every archive is
the one Zenodo publishes (as recorded in dcase_util's dataset index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from claptune.data.dataset import (
    ClassificationDataset,
    default_data_dir,
    index_labels,
    resolve_audio,
)
from claptune.data.remote import Remote
from claptune.download import download as fetch_url
from claptune.download import extract_archive
from claptune.errors import ClaptuneError
from claptune.textfiles import read_text

SPLITS = ("all", "development", "evaluation")
EVALUATION_FOLD = 0

_DEV = "https://zenodo.org/records/400515/files/TUT-acoustic-scenes-2017-development"
_EVAL = "https://zenodo.org/records/1040168/files/TUT-acoustic-scenes-2017-evaluation"
_DEV_MD5 = (
    "251325a9afaaad0326ad1c57f57d514a",
    "c26861e05147dc319b4250eb103d9d99",
    "a4815775f8a5e629179726ee4cd4f55a",
    "1732b03afe8c53ef8bba80ba14766e57",
    "611be754a0c951185c6ae4b7643c19a0",
    "165a201db800d3ea76fce5a9c2bd97d7",
    "c7d79db84264401c0f8680dcc36013ad",
    "35043f25123439392338c790494c7a19",
    "0805dcf5d8e6871dc9610182b2efb93a",
    "5df83a191295a04e290b125c634e13e7",
)
_EVAL_MD5 = (
    "5d97dea8461baec8027ae4a0c2b18d4b",
    "4085ef5fa286f2169074993a4e405953",
    "cac432579e7cf2dff0aec7aaed248956",
    "664bf09c3d24bd26c6b587f1d709de36",
)
REMOTES = {
    "development": (
        Remote(
            f"{_DEV}.meta.zip?download=1",
            "TUT-acoustic-scenes-2017-development.meta.zip",
            md5="9007fd4772d816590c5db5f5e9568f5d",
        ),
        *(
            Remote(
                f"{_DEV}.audio.{i}.zip?download=1",
                f"TUT-acoustic-scenes-2017-development.audio.{i}.zip",
                md5=md5,
            )
            for i, md5 in enumerate(_DEV_MD5, start=1)
        ),
    ),
    "evaluation": (
        Remote(
            f"{_EVAL}.meta.zip?download=1",
            "TUT-acoustic-scenes-2017-evaluation.meta.zip",
            md5="e006cfec14a49dd79a6ab8f8d5b1c5e6",
        ),
        *(
            Remote(
                f"{_EVAL}.audio.{i}.zip?download=1",
                f"TUT-acoustic-scenes-2017-evaluation.audio.{i}.zip",
                md5=md5,
            )
            for i, md5 in enumerate(_EVAL_MD5, start=1)
        ),
    ),
}


def load_tut2017(
    root: str | Path | None = None,
    download: bool = False,
    split: str = "all",
    progress: bool = True,
) -> ClassificationDataset:
    """TUT Acoustic Scenes 2017: the development set, the evaluation set, or both (``all``,
    every set found under ``root``)."""
    if split not in SPLITS:
        raise ClaptuneError(f"unknown TUT2017 split {split!r}; use one of {', '.join(SPLITS)}")
    base = Path(root).expanduser() if root is not None else default_data_dir() / "tut2017"
    sets = _find_sets(base, split, download, progress)
    items: list[Path] = []
    scenes: list[str] = []
    folds: list[int] = []
    for kind, folder in sets.items():
        set_items, set_scenes = _read_labels(folder)
        fold_of = _read_folds(folder) if kind == "development" else {}
        items += set_items
        scenes += set_scenes
        folds += [fold_of.get(p.stem, EVALUATION_FOLD) for p in set_items]
    labels, class_names = index_labels(scenes)
    return ClassificationDataset("tut2017", items, labels, class_names, np.array(folds))


def _set_folder_name(kind: str) -> str:
    return f"TUT-acoustic-scenes-2017-{kind}"


def _has_labels(folder: Path) -> bool:
    return _labelled(folder / "meta.txt") or _labelled(folder / "evaluation_setup" / "evaluate.txt")


def _find_sets(base: Path, split: str, download: bool, progress: bool) -> dict[str, Path]:
    if _has_labels(base):  # root is one set folder
        kind = "evaluation" if "evaluation" in base.name else "development"
        if split not in ("all", kind):
            raise ClaptuneError(f"{base} holds the TUT2017 {kind} set, not the {split} set")
        return {kind: base}
    wanted = ["development", "evaluation"] if split == "all" else [split]
    sets = {
        k: base / _set_folder_name(k) for k in wanted if _has_labels(base / _set_folder_name(k))
    }
    if download:
        for kind in wanted:
            if kind not in sets:
                for remote in REMOTES[kind]:
                    archive = fetch_url(
                        remote.url,
                        base / ".downloads" / remote.filename,
                        md5=remote.md5,
                        desc=remote.filename,
                        progress=progress,
                        hint="then run again (or pass --root to an unpacked copy)",
                    )
                    extract_archive(archive, base)
                if not _has_labels(base / _set_folder_name(kind)):
                    raise ClaptuneError(
                        f"the TUT2017 {kind} archives unpacked into {base} but "
                        "hold no meta.txt; unpack a copy by hand and pass --root"
                    )
                sets[kind] = base / _set_folder_name(kind)
    if not sets or (split != "all" and split not in sets):
        names = " or ".join(_set_folder_name(k) for k in wanted)
        raise ClaptuneError(
            f"TUT2017 not found at {base}: no {names} with meta.txt there; "
            "point --root at a copy, or add --download to fetch it"
        )
    return dict(sorted(sets.items()))


def _read_labels(folder: Path) -> tuple[list[Path], list[str]]:
    meta = folder / "meta.txt"
    if not _labelled(meta):  # the evaluation set's labels may live only in evaluate.txt
        meta = folder / "evaluation_setup" / "evaluate.txt"
    items, scenes = [], []
    for n, line in enumerate(read_text(meta, what="TUT2017 label file").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1].strip():
            raise ClaptuneError(f"{meta}:{n}: expected 'audio/FILE<TAB>scene', got {line!r}")
        items.append(resolve_audio(folder / fields[0].strip()))
        scenes.append(fields[1].strip())
    if not items:
        raise ClaptuneError(f"{meta} lists no clips")
    return items, scenes


def _labelled(path: Path) -> bool:
    """True if ``path`` exists and its first entry has a scene label after the file name."""
    if not path.is_file():
        return False
    text = read_text(path, what="TUT2017 label file")
    first = next((line for line in text.splitlines() if line.strip()), "")
    return len(first.split("\t")) >= 2


def _read_folds(folder: Path) -> dict[str, int]:
    """File stem -> development fold, from ``evaluation_setup/fold{k}_evaluate.txt``."""
    fold_of: dict[str, int] = {}
    for k in range(1, 5):
        setup = folder / "evaluation_setup" / f"fold{k}_evaluate.txt"
        if not setup.is_file():
            raise ClaptuneError(
                f"TUT2017 development set at {folder} lacks {setup.name} "
                "(evaluation_setup/ of the meta archive)"
            )
        for line in read_text(setup, what="TUT2017 fold file").splitlines():
            if line.strip():
                fold_of[Path(line.split("\t")[0].strip()).stem] = k
    return fold_of
