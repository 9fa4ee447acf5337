"""One run per output folder: ``improve``, ``adapt``, ``demo``, ``ablate`` and ``zeroshot`` hold
their ``--out`` while they run, and a finished folder is replaced only when asked.

``hold_run_folder(out, command, overwrite)`` takes an advisory lock (``fcntl.flock`` on
``out/.claptune-lock``, released by the kernel when the process dies, so a killed run never
leaves the folder locked); a second run into a folder that a live run holds is refused in one
line naming that run. A run records itself in ``out/.claptune-run.json``: while it runs, as
'running' with the entries that were there before it; when it ends without an error, as
finished with the entries it wrote (everything but those that were there before). A folder
holding a finished record (or, from earlier versions, a ``report.json`` or an
``ablation.json``) is finished: a new run into it needs ``overwrite=True`` (``--overwrite``).
So does a file the command writes (``OUTPUTS``) that no claptune run wrote, such as a user's own
``predictions.csv``: it is never written over unasked. What ``--overwrite`` replaces is moved
aside into ``out/.claptune-replaced/`` and deleted only when the new run finishes: a new run
that fails (a typo found after the folder was taken, a missing data set, Ctrl-C, SIGTERM) puts
the earlier run back and removes what it wrote itself, and a run killed outright gets it back
at the next run into the folder. Other files of the user's in the folder are never touched. A
folder left by a killed run (a 'running' record) is completed by rerunning without a flag, and
the completed record lists what both runs wrote. A folder the failed run created and left
empty is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from claptune.atomic import write_json_atomic
from claptune.errors import ClaptuneError

LOCK_FILE = ".claptune-lock"
RECORD_FILE = ".claptune-run.json"
REPLACED_DIR = ".claptune-replaced"  # the finished run an --overwrite run replaces, till it ends
INTERNAL = (LOCK_FILE, RECORD_FILE, REPLACED_DIR)
_REPORT = ("report.json", "report.md", "report.html", "model", "student")
_IMPROVE = (*_REPORT, "per_class.png", "priors.png", "confusion_after.png", "pairs_split0.csv")
# what each command writes into its --out (the main files; improve also writes one pairs file
# per split): a file of these names that no claptune run wrote is not written over unasked
OUTPUTS: dict[str, tuple[str, ...]] = {
    "zeroshot": ("zeroshot.json", "confusion.png", "predictions.csv"),
    "adapt": (
        *_REPORT,
        "predictions.csv",
        "pairs.csv",
        "classes.png",
        "confidence.png",
        "margin.png",
    ),
    "improve": _IMPROVE,
    "demo": _IMPROVE,
    "ablate": ("ablation.json", "ablation.md", "ablation.png", "scores.npz"),
}


@contextlib.contextmanager
def hold_run_folder(
    out: str | os.PathLike,
    command: str,
    overwrite: bool = False,
    outputs: Sequence[str] | None = None,
) -> Iterator[None]:
    """Hold ``out`` for one run of ``command`` (see the module docstring). ``outputs``: the
    names the command writes into ``out`` (default ``OUTPUTS[command]``); one that is already
    there and no claptune run wrote is refused without ``overwrite`` (it would be written over)
    and set aside with it."""
    out = Path(out)
    outputs = OUTPUTS.get(command, ()) if outputs is None else tuple(outputs)
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
        record = _read_record(out)
        if isinstance(record, dict) and record.get("state") == "running":
            # a run killed before it finished: this one completes it, and what that run wrote
            # is this run's too (its record kept the entries that were there before it)
            names = record.get("preexisting")
            preexisting = (
                {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()
            )
            record = None
        else:
            preexisting = None
        aside = _set_aside_finished(out, overwrite, record, outputs, preexisting)
        before = {p.name for p in out.iterdir()}
        if preexisting is None:
            preexisting = before - set(INTERNAL)
        write_json_atomic(
            out / RECORD_FILE,
            {"command": command, "state": "running", "preexisting": sorted(preexisting)},
        )
        try:
            yield
        except BaseException:
            if aside is not None:  # the replacement failed: the earlier run comes back
                for p in out.iterdir():
                    if p.name not in before:
                        _remove(p)
                _put_back(out)
            elif created and {p.name for p in out.iterdir()} <= {LOCK_FILE, RECORD_FILE}:
                shutil.rmtree(out, ignore_errors=True)  # a folder this run made, left empty
            raise
        written = sorted(
            p.name for p in out.iterdir() if p.name not in preexisting and p.name not in INTERNAL
        )
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


def _read_record(out: Path):
    """The folder's record: a dict, {} when it cannot be read, None when there is none."""
    path = out / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _set_aside_finished(
    out: Path, overwrite: bool, record, outputs: Sequence[str], completing: set[str] | None
) -> Path | None:
    """Refuse a finished ``out`` (a record, or a report.json / ablation.json of an earlier
    version), or one holding files of ``outputs`` that no claptune run wrote, without
    ``overwrite``; with it, move those entries (and the record) into
    ``out/.claptune-replaced``, returned. None when there is nothing to replace.
    ``completing``: the entries that were there before a killed run this one completes."""
    legacy = [name for name in ("report.json", "ablation.json") if (out / name).is_file()]
    if completing is not None:  # a killed run's outputs are this run's to complete
        theirs = [n for n in outputs if (out / n).exists() and n in completing]
        finished = False
    else:
        theirs = [n for n in outputs if (out / n).exists() and n not in _written(record)]
        finished = record is not None or bool(legacy)
    if not finished and not theirs:
        return None
    if not overwrite:
        if finished:
            what = f"claptune {record.get('command', 'run')}" if record else "run"
            listed = _listed(record) if record else ", ".join(legacy) or "unknown"
            raise ClaptuneError(
                f"{out} holds a finished {what} (the files it wrote: {listed}); pass "
                "--overwrite to replace them, or choose another --out"
            )
        raise ClaptuneError(
            f"{out} holds {', '.join(theirs)}, which this run would write over and no claptune "
            "run wrote; move it away, pass --overwrite to replace it, or choose another --out"
        )
    aside = out / REPLACED_DIR
    aside.mkdir()
    names = [*(_written(record) if record else legacy if finished else []), *theirs]
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


__all__ = ["LOCK_FILE", "OUTPUTS", "RECORD_FILE", "REPLACED_DIR", "hold_run_folder"]
