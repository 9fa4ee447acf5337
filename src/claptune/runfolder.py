"""One run per output folder: ``improve``, ``adapt``, ``demo``, ``ablate`` and ``zeroshot`` hold
their ``--out`` while they run, and a finished folder is replaced only when asked.

``hold_run_folder(out, command, overwrite)`` takes an advisory lock (``fcntl.flock`` on
``out/.claptune-lock``, released by the kernel when the process dies, so a killed run never
leaves the folder locked); a second run into a folder that a live run holds is refused in one
line naming that run. When the run ends without an error it records itself in
``out/.claptune-run.json``: the command and the entries of ``out`` that were not there
before it started. A folder holding such a record (or, from earlier versions, a
``report.json`` or an ``ablation.json``) is finished: a new run into it needs ``overwrite=True``
(``--overwrite``). The entries the record lists, and nothing else, are then moved aside into
``out/.claptune-replaced/`` and deleted only when the new run finishes: a new run that fails
(a typo found after the folder was taken, a missing data set, Ctrl-C) puts the earlier run back
and removes what it wrote itself, and a run killed outright gets it back at the next run into
the folder. So files of the user's that were in the folder before are never touched, and a
finished run is lost only to a finished replacement. A folder the failed run created and left
empty is removed. A folder left by a killed run (no record) is completed by rerunning without a
flag.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from claptune.atomic import write_json_atomic
from claptune.errors import ClaptuneError

LOCK_FILE = ".claptune-lock"
RECORD_FILE = ".claptune-run.json"
REPLACED_DIR = ".claptune-replaced"  # the finished run an --overwrite run replaces, till it ends


@contextlib.contextmanager
def hold_run_folder(
    out: str | os.PathLike, command: str, overwrite: bool = False
) -> Iterator[None]:
    """Hold ``out`` for one run of ``command`` (see the module docstring)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ClaptuneError(f"--out {out} is a file, not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another run"
            raise ClaptuneError(
                f"{out} is in use by a run still going ({holder}); wait for it to finish or "
                "choose another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"claptune {command}, process {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        _put_back(out)  # a replacing run killed outright: the run it replaced comes back
        aside = _set_aside_finished(out, overwrite)
        before = {p.name for p in out.iterdir()}
        try:
            yield
        except BaseException:
            if aside is not None:  # the replacement failed: the earlier run comes back
                for p in out.iterdir():
                    if p.name not in before:
                        _remove(p)
                _put_back(out)
            if created and [p.name for p in out.iterdir()] == [LOCK_FILE]:
                shutil.rmtree(out, ignore_errors=True)  # a folder this run made, left empty
            raise
        written = sorted(p.name for p in out.iterdir() if p.name not in before | {RECORD_FILE})
        write_json_atomic(
            out / RECORD_FILE,
            {
                "command": command,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "written": written,
            },
        )
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _put_back(out: Path) -> None:
    """Move the entries of ``out/.claptune-replaced`` back (over any of the same name)."""
    aside = out / REPLACED_DIR
    if not aside.is_dir():
        return
    for p in aside.iterdir():
        _remove(out / p.name)
        p.rename(out / p.name)
    shutil.rmtree(aside, ignore_errors=True)


def _set_aside_finished(out: Path, overwrite: bool) -> Path | None:
    """Refuse a finished ``out`` without ``overwrite``; with it, move the earlier run's entries
    (its record's list, and the record) into ``out/.claptune-replaced``, returned. None when
    the folder holds no finished run."""
    record_path = out / RECORD_FILE
    record = None
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
    legacy = [name for name in ("report.json", "ablation.json") if (out / name).is_file()]
    if record is None and not legacy:
        return None
    if not overwrite:
        what = f"claptune {record.get('command', 'run')}" if isinstance(record, dict) else "run"
        raise ClaptuneError(
            f"{out} holds a finished {what} (the files it wrote: "
            f"{_listed(record) if record else ', '.join(legacy) or 'unknown'}); pass "
            "--overwrite to replace them, or choose another --out"
        )
    aside = out / REPLACED_DIR
    aside.mkdir()
    names = _written(record) if record is not None else legacy
    for name in [*names, RECORD_FILE]:
        if not isinstance(name, str) or "/" in name or name in ("", ".", "..", LOCK_FILE):
            continue
        if name == REPLACED_DIR:
            continue
        path = out / name
        if path.exists() or path.is_symlink():
            path.rename(aside / name)
    return aside


def _written(record) -> list:
    """The entries a finished run's record lists (none for a record unread or from before)."""
    written = record.get("written", []) if isinstance(record, dict) else []
    return written if isinstance(written, list) else []


def _listed(record) -> str:
    """The first entries of a finished run's record, for the refusal: ``report.json, model``."""
    names = [str(n) for n in _written(record)]
    if not names:
        return "none"
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


__all__ = ["LOCK_FILE", "RECORD_FILE", "REPLACED_DIR", "hold_run_folder"]
