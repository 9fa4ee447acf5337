"""Download files safely: progress bar, checksum, atomic placement, resumable, clear errors.

``download(url, dest, sha256=..., md5=...)`` fetches ``url`` into ``dest + ".part"`` and moves it
over ``dest`` with ``os.replace`` only once the whole file has arrived and its checksum matches,
so ``dest`` is never a half-written file. A rerun after an interruption continues the ``.part``
file with an HTTP ``Range`` request where the server allows it (otherwise it starts over), and
a ``dest`` that already exists with the right checksum is not fetched again. An unreachable
network raises one ``ClaptuneError`` line that says where to put a copy fetched by other means.

``extract_archive`` unpacks .zip / .tar(.gz|.bz2|.xz) archives, refusing members that would
land outside the destination folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from claptune.errors import ClaptuneError

CHUNK_BYTES = 1 << 20
USER_AGENT = "claptune-download/0.1"


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    desc: str | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
    hint: str | None = None,
) -> Path:
    """Fetch ``url`` to ``dest`` and return ``dest``.

    ``sha256`` / ``md5`` (hex) are verified before ``dest`` appears; a mismatch deletes the
    partial download and raises ``ClaptuneError``. ``timeout`` bounds connecting and every
    read, so an unreachable host fails fast. ``progress``: a bar (True), none (False), or
    tqdm's defaults (None), which ``claptune ... --quiet`` turns off through ``TQDM_DISABLE``.
    ``hint`` is appended to network errors (e.g. "or pass --root to a local copy").
    """
    dest = Path(dest)
    expected = _expected_digest(sha256, md5)
    if dest.is_file():
        if expected is None or _file_digest(dest, expected[0]) == expected[1]:
            return dest
        # a stale or corrupt file from elsewhere: fetch a good one instead of trusting it
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, desc or dest.name, timeout, progress)
    # URLError and timeouts are OSErrors; a malformed URL is a ValueError
    except (OSError, http.client.HTTPException, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        advice = f"download it by other means and put it at {dest}"
        if hint:
            advice += f", {hint}"
        raise ClaptuneError(f"cannot download {url} ({reason}); {advice}") from None
    if expected is not None:
        algo, want = expected
        got = _file_digest(part, algo)
        if got != want:
            part.unlink()
            raise ClaptuneError(
                f"{algo} of {url} is {got}, expected {want}: the download is "
                f"corrupt or the file changed upstream; nothing was written to {dest}"
            )
    os.replace(part, dest)
    return dest


def _expected_digest(sha256: str | None, md5: str | None) -> tuple[str, str] | None:
    if sha256 and md5:
        raise ValueError("give sha256 or md5, not both")
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def _file_digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, desc: str, timeout: float, progress: bool | None) -> None:
    """Write ``url`` into ``part``, continuing an existing ``part`` where the server allows."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have and url.startswith(("http://", "https://")):
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        status = getattr(response, "status", None)
        resumed = have > 0 and status == 206
        if not resumed:
            have = 0  # the server sent the whole file: start the part over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        with (
            part.open("ab" if resumed else "wb") as out,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                **({} if progress is None else {"disable": not progress}),
            ) as bar,
        ):
            for block in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise OSError(
            f"connection closed after {part.stat().st_size} of {total} bytes; run again to resume"
        )


def extract_archive(archive: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
    """Unpack a .zip or .tar[.gz|.bz2|.xz] archive into ``dest_dir``; return ``dest_dir``.

    Extraction goes to a temporary sibling folder that is renamed into place at the end, so an
    interrupted extraction never looks complete.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    tmp = dest_dir.with_name(dest_dir.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(name, tmp)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf.getmembers():
                    _check_member(member.name, tmp)
                    if not (member.isfile() or member.isdir()):
                        # data sets hold files and folders; links and devices are refused on
                        # every Python (the "data" filter only exists from 3.11.4 on)
                        raise ClaptuneError(
                            f"archive member {member.name!r} is not a plain file or folder"
                        )
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # Python < 3.11.4 (e.g. Debian 12's 3.11.2): members checked above
                    tf.extractall(tmp)
        else:
            raise ClaptuneError(f"{archive} is not a zip or tar archive")
    except BaseException as err:
        # a refused or damaged archive (or an interrupt) leaves no half-filled folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, zipfile.BadZipFile | tarfile.TarError | EOFError):
            raise ClaptuneError(
                f"cannot extract {archive}: {err}; delete it and download again"
            ) from None
        raise
    if dest_dir.exists():
        # merge into an existing folder (several archives of one data set share a root)
        for child in tmp.iterdir():
            target = dest_dir / child.name
            if target.exists():
                _merge_tree(child, target)
            else:
                os.replace(child, target)
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, dest_dir)
    return dest_dir


def _merge_tree(src: Path, dst: Path) -> None:
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            target = dst / child.name
            if target.exists():
                _merge_tree(child, target)
            else:
                os.replace(child, target)
    else:
        os.replace(src, dst)


def _check_member(name: str, root: Path) -> None:
    target = (root / name).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise ClaptuneError(f"archive member {name!r} would be written outside {root}")
