"""Files that are whole or absent: atomic writes, damaged files set aside, temporaries of
killed writers removed.

``atomic_file(path)`` writes to a temporary file beside ``path`` (named with the writer's
process id), flushes it to disk, moves it over ``path`` with ``os.replace`` (atomic on POSIX)
and flushes the folder entry, so a crash or a full disk leaves the old file or the new one,
never a part of it; on any failure the temporary file is deleted. A writer killed with
``kill -9`` cannot delete its own: ``remove_stale_temporaries(folder)``, called by the stores
and caches when they open a folder, deletes those whose process is gone, so a full disk is not
kept full by leftovers. ``set_aside(path, ...)`` renames a damaged part ``*.damaged`` with
one warning, so that its contents are computed again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\..+\.pid(\d+)\..*\.tmp$")


class atomic_file:
    """``with atomic_file(path) as fh:`` binary writing that lands whole or not at all."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.pid{os.getpid()}.", suffix=".tmp"
        )
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type, *exc: object) -> None:
        try:
            if exc_type is None:
                self.fh.flush()
                os.fsync(self.fh.fileno())
        except BaseException:
            exc_type = OSError  # the data may not be on disk: never move it into place
            raise
        finally:
            try:
                self.fh.close()
            except OSError:  # a full disk can fail the close too: the file is dropped below
                exc_type = exc_type or OSError
            if exc_type is None:
                os.replace(self.tmp, self.path)
                fsync_dir(self.path.parent)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_file(path) as fh:
        fh.write((json.dumps(obj, indent=1, default=str) + "\n").encode())


def remove_stale_temporaries(folder: Path) -> int:
    """Delete the temporary files of ``atomic_file`` in ``folder`` whose writer (a process of
    this machine) is gone; return how many."""
    removed = 0
    for path in Path(folder).glob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def ram_disk() -> str | None:
    """/dev/shm where the machine has one (scratch files that never touch the disk), else None
    (the temp folder)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


def scratch_dir(prefix: str, root: str | os.PathLike | None = None) -> Path:
    """A new temporary folder ``<prefix>pid<pid>-<random>`` under ``root`` (None: the temp
    folder). Folders of the same prefix whose process is gone (killed with ``kill -9``: it
    could not remove its own) are removed first. The caller removes its own when done."""
    base = Path(root or tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}pid(\d+)-")
    for old in base.glob(f"{prefix}pid*-*"):
        match = pattern.match(old.name)
        if match and old.is_dir() and old.stat().st_uid == os.getuid():
            if not _alive(int(match.group(1))):
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}pid{os.getpid()}-", dir=base))


def set_aside(path: Path, what: str, then: str = "its items will be computed again") -> None:
    """Rename a damaged ``path`` to ``*.damaged`` with one warning; returns None (no data)."""
    damaged = path.with_name(path.name + ".damaged")
    with contextlib.suppress(FileNotFoundError):  # another writer may have moved it already
        os.replace(path, damaged)
    log.warning("damaged %s: %s; moved to %s, %s", path, what, damaged.name, then)
    return None


__all__ = [
    "atomic_file",
    "fsync_dir",
    "ram_disk",
    "remove_stale_temporaries",
    "scratch_dir",
    "set_aside",
    "write_json_atomic",
]
