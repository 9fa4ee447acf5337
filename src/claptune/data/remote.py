"""Find a published data set on disk, or download and unpack it on request.

A data set is looked for in ``root`` (given by the user, e.g. ``--root ../shared/data/esc50-subset``)
or in ``default_data_dir()/<name>`` (``$CLAPTUNE_DATA/<name>``), or in ``$CLAPTUNE_DATA``
itself when that is the data set. The folder may be the data set itself or the folder its
archive unpacks into (``ESC-50-master/``, ``UrbanSound8K/``). Downloads only happen when asked
(``download=True``): archives go to ``<dest>/.downloads`` (checksummed, resumable) and are
unpacked into ``<dest>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from claptune.data.dataset import default_data_dir
from claptune.download import download as fetch_url
from claptune.download import extract_archive
from claptune.errors import ClaptuneError


@dataclass(frozen=True)
class Remote:
    """One archive of a published data set."""

    url: str
    filename: str
    md5: str | None = None  # published checksum; None where no stable one exists (see docs)


def locate(
    name: str,
    root: str | Path | None,
    marker: str,
    subfolders: Sequence[str],
    remotes: Sequence[Remote],
    download: bool,
    progress: bool = True,
) -> Path:
    """The folder holding ``marker`` (a relative path such as ``meta/esc50.csv``).

    Looks in ``root`` and its ``subfolders``; without ``root``, in ``$CLAPTUNE_DATA/<name>``
    (the default data folder), then in ``$CLAPTUNE_DATA`` itself, so that
    ``CLAPTUNE_DATA=path/to/esc50`` means the same to every command. If absent and ``download``
    is set, downloads ``remotes`` into ``$CLAPTUNE_DATA/<name>`` (or ``root``) first. Otherwise
    raises a ``ClaptuneError`` saying how to get the data.
    """
    dest = Path(root).expanduser() if root is not None else default_data_dir() / name
    found = _find(dest, marker, subfolders)
    if found is None and root is None:
        found = _find(default_data_dir(), marker, subfolders)
    if found is not None:
        return found
    if not download:
        if root is not None:
            raise ClaptuneError(
                f"{name} not found at {dest}: no {marker} there or in "
                f"{', '.join(subfolders) or 'its subfolders'}; point --root at a "
                "copy of the data set, or add --download to fetch it"
            )
        raise ClaptuneError(
            f"{name} not found at {dest}; pass --root PATH to a local copy, "
            "or add --download to fetch it"
        )
    archives = dest / ".downloads"
    for remote in remotes:
        archive = fetch_url(
            remote.url,
            archives / remote.filename,
            md5=remote.md5,
            desc=remote.filename,
            progress=progress,
            hint="then run again (or pass --root to an unpacked copy)",
        )
        extract_archive(archive, dest)
    found = _find(dest, marker, subfolders)
    if found is None:
        raise ClaptuneError(
            f"the {name} archives unpacked into {dest} but hold no {marker}: "
            "the upstream layout changed; unpack a copy by hand and pass --root"
        )
    return found


def _find(dest: Path, marker: str, subfolders: Sequence[str]) -> Path | None:
    for sub in ("", *subfolders):
        folder = dest / sub if sub else dest
        if (folder / marker).exists():
            return folder
    return None
