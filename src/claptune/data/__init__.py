"""Data: the target tasks' labelled clips and captioned corpora.

``load_dataset(name, root=None, download=False, folds=None, **kw)`` returns a
``ClassificationDataset`` for one of ``DATASETS``:

    esc50    ESC-50 (meta/esc50.csv, audio/), folds 1-5
    us8k     UrbanSound8K (metadata/UrbanSound8K.csv, audio/fold{n}/), folds 1-10
    tut2017  TUT Acoustic Scenes 2017 development (folds 1-4) + evaluation (fold 0); split=
    folder   a folder of class folders
    csv      a CSV of path,label[,fold]

``root`` points at a local copy; without it a published set is looked for in
``$CLAPTUNE_DATA/<name>``, then in ``$CLAPTUNE_DATA`` itself (default ~/.cache/claptune/data),
and fetched into ``$CLAPTUNE_DATA/<name>`` with ``download=True``.
``load_captioned_corpus(root)`` reads a ``manifest.csv`` corpus of captioned clips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from claptune.data.captioned import load_captioned_corpus
from claptune.data.dataset import (
    ClassificationDataset,
    PairedCorpus,
    UnlabeledClips,
    default_data_dir,
)
from claptune.errors import ClaptuneError, did_you_mean


def _esc50(root, download, **kw):
    from claptune.data.esc50 import load_esc50

    return load_esc50(root, download, **kw)


def _us8k(root, download, **kw):
    from claptune.data.us8k import load_us8k

    return load_us8k(root, download, **kw)


def _tut2017(root, download, **kw):
    from claptune.data.tut2017 import load_tut2017

    return load_tut2017(root, download, **kw)


def _folder(root, download, **kw):
    from claptune.data.local import load_folder

    return load_folder(root, **kw)


def _csv(root, download, **kw):
    from claptune.data.local import load_csv

    return load_csv(root, **kw)


# name -> reader(root, download, **kw)
DATASETS: dict[str, Callable[..., ClassificationDataset]] = {
    "esc50": _esc50,
    "us8k": _us8k,
    "tut2017": _tut2017,
    "folder": _folder,
    "csv": _csv,
}


def load_dataset(
    name: str,
    root: str | Path | None = None,
    download: bool = False,
    folds: Sequence[int] | None = None,
    **kwargs,
) -> ClassificationDataset:
    """Labelled clips of data set ``name``, optionally only the given ``folds``."""
    if name not in DATASETS:
        raise ClaptuneError(
            f"unknown dataset {name!r}; known: {', '.join(DATASETS)}{did_you_mean(name, DATASETS)}"
        )
    try:
        dataset = DATASETS[name](root, download, **kwargs)
    except TypeError as err:
        if "unexpected keyword" in str(err):
            raise ClaptuneError(f"dataset {name}: {err}") from None
        raise
    if folds is not None:
        dataset = dataset.select_folds(folds)
    return dataset


__all__ = [
    "ClassificationDataset",
    "DATASETS",
    "PairedCorpus",
    "UnlabeledClips",
    "default_data_dir",
    "load_captioned_corpus",
    "load_dataset",
]
