"""The one reader of text files a user hands over: audio lists, class lists, captions (txt
and csv), pairs, manifests.

A file is decoded as UTF-8, a byte-order mark stripped (spreadsheets write one); anything
else (latin-1, UTF-16, a binary file) is refused with a ``ClaptuneError`` that names the file
and the byte offset of the first byte that is not UTF-8, unless an encoding is given: by the
caller, or for a whole command by ``--encoding`` (``claptune.cli`` wraps the command in
``default_encoding``). Never guessed: a latin-1 file decoded as cp1252 reads back as other
words without an error.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import csv
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from claptune.errors import ClaptuneError, printable

_ENCODING: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "claptune_encoding", default=None
)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)


@contextlib.contextmanager
def default_encoding(encoding: str | None) -> Iterator[None]:
    """Decode the user's text files read inside the block with ``encoding`` (None: UTF-8)."""
    if encoding is not None:
        _codec(encoding)
    token = _ENCODING.set(encoding)
    try:
        yield
    finally:
        _ENCODING.reset(token)


def read_text(
    path: str | os.PathLike,
    encoding: str | None = None,
    what: str = "file",
    names_as_bytes: bool = False,
) -> str:
    """The text of ``path``, decoded as described in the module docstring; ``what`` names the
    file's role in the error ("class list", "pairs file"). With ``names_as_bytes`` (a table
    of file names that claptune itself writes, such as pairs) bytes that are not UTF-8 read
    back as surrogate escapes, Python's spelling of such a file name; the caller checks its
    text fields with ``check_text_fields``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ClaptuneError(f"{what} not found: {printable(path)}") from None
    except IsADirectoryError:
        raise ClaptuneError(f"{what} {printable(path)} is a folder, not a text file") from None
    except OSError as err:
        raise ClaptuneError(f"cannot read {what} {printable(path)}: {err.strerror}") from None
    encoding = encoding or _ENCODING.get()
    if names_as_bytes and encoding is None:
        data = _without_bom(data, path, what)
        _refuse_binary(data.decode("utf-8", "surrogateescape"), path, what)
        return data.decode("utf-8", "surrogateescape")
    return decode(data, path, encoding, what)


def decode(data: bytes, path: str | os.PathLike, encoding: str | None, what: str = "file") -> str:
    """``data`` read from ``path`` as text (see the module docstring)."""
    name = printable(path)
    if encoding is not None:
        try:
            text = data.decode(_codec(encoding))
        except UnicodeDecodeError as err:
            raise ClaptuneError(
                f"{what} {name} is not {encoding} text: byte 0x{data[err.start]:02x} at offset "
                f"{err.start} cannot be decoded"
            ) from None
        return text.removeprefix("\ufeff")
    data = _without_bom(data, path, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ClaptuneError(
            f"{what} {name} is not UTF-8 text: byte 0x{data[err.start]:02x} at offset "
            f"{err.start}; save it as UTF-8 or pass --encoding (e.g. --encoding latin-1)"
        ) from None
    _refuse_binary(text, path, what)
    return text


def _without_bom(data: bytes, path: str | os.PathLike, what: str) -> bytes:
    if data.startswith(_UTF16_BOMS):
        raise ClaptuneError(
            f"{what} {printable(path)} is UTF-16 or UTF-32 text (byte-order mark at offset 0); "
            "save it as UTF-8 or pass --encoding utf-16"
        )
    return data.removeprefix(codecs.BOM_UTF8)


def _refuse_binary(text: str, path: str | os.PathLike, what: str) -> None:
    nul = text.find("\x00")
    if nul >= 0:
        at = len(text[:nul].encode("utf-8", "surrogateescape"))
        raise ClaptuneError(
            f"{what} {printable(path)} is not a text file: a NUL byte at offset {at}"
        )


def read_lines(
    path: str | os.PathLike, encoding: str | None = None, what: str = "file"
) -> list[str]:
    """The stripped lines of ``path`` that are neither empty nor comments (``#``)."""
    lines = (ln.strip() for ln in read_text(path, encoding, what).splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def read_names(
    path: str | os.PathLike,
    exists: Callable[[str], bool],
    encoding: str | None = None,
    what: str = "file list",
) -> list[str]:
    """The lines of a list of file names (stripped; empty lines and ``#`` comments dropped).

    A line that is not UTF-8 is kept as the bytes it holds (surrogate escapes, as Python
    spells a file name that is not UTF-8) only where ``exists`` finds a file of that name: a
    listing of a file system whose names are not UTF-8. Any other such line is refused,
    naming the file and the byte offset."""
    if encoding or _ENCODING.get():
        return read_lines(path, encoding, what)
    try:
        return read_lines(path, None, what)
    except ClaptuneError as err:
        if "is not UTF-8 text" not in str(err):
            raise
    data = Path(path).read_bytes().removeprefix(codecs.BOM_UTF8)
    names, offset = [], 0
    for raw in data.splitlines(keepends=True):
        line = raw.decode("utf-8", "surrogateescape").strip()
        if line and not line.startswith("#"):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                if not exists(line):
                    raise ClaptuneError(
                        f"{what} {printable(path)} is not UTF-8 text: byte "
                        f"0x{raw[bad.start]:02x} at offset {offset + bad.start}, and no file has "
                        "that line's bytes as its name; save it as UTF-8 or pass --encoding"
                    ) from None
            names.append(line)
        offset += len(raw)
    return names


def check_text_fields(data: bytes, path: str | os.PathLike, fields: list[str], what: str) -> None:
    """Refuse the first of ``fields`` (decoded with surrogate escapes from ``data``) that holds
    bytes that are not UTF-8, naming the file and the byte offset: text (captions, class
    names) must be UTF-8 even where file names beside it need not be."""
    for field in fields:
        bad = next((i for i, ch in enumerate(field) if "\udc80" <= ch <= "\udcff"), None)
        if bad is not None:
            raw = field.encode("utf-8", "surrogateescape")
            at = max(data.find(raw), 0) + len(field[:bad].encode("utf-8", "surrogateescape"))
            raise ClaptuneError(
                f"{what} {printable(path)} is not UTF-8 text: byte 0x{data[at]:02x} at offset "
                f"{at}; save it as UTF-8 or pass --encoding (e.g. --encoding latin-1)"
            )


def csv_reader(
    path: str | os.PathLike, encoding: str | None = None, what: str = "file", delimiter: str = ","
) -> csv.DictReader:
    """A ``csv.DictReader`` over the decoded text of ``path``."""
    text = read_text(path, encoding, what)
    return csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 with file names that are not UTF-8 escaped (``bad\\xff.wav``,
    as ``errors.printable`` shows them): a report or a listing never fails on such a name."""
    Path(path).write_text(printable(text), encoding="utf-8")


def _codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ClaptuneError(f"unknown text encoding {encoding!r} (--encoding)") from None


def public_text(value: Any) -> Any:
    """``value`` with every local path replaced by its last component (strings, and the
    strings inside lists and dicts): what a card, a report or a config may show to others.
    A Hub id (``laion/clap-htsat-fused``) is not a path and stays."""
    if isinstance(value, str):
        return " ".join(_public_word(w) for w in value.split(" "))
    if isinstance(value, dict):
        return {k: public_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(public_text(v) for v in value)
    return value


def _public_word(word: str) -> str:
    core = word.strip("()[],;'\"`")
    if not core or ("/" not in core and "\\" not in core and not core.startswith("~")):
        return word
    local = (
        os.path.isabs(core)
        or core.startswith(("./", "../", "~", ".\\", "..\\"))
        or re.match(r"^[A-Za-z]:[\\/]", core) is not None
        or Path(core).exists()
    )
    if not local:
        return word
    name = Path(core.rstrip("/\\")).name or core
    return word.replace(core, name)


__all__ = [
    "public_text",
    "check_text_fields",
    "csv_reader",
    "decode",
    "default_encoding",
    "read_lines",
    "read_names",
    "read_text",
    "write_text",
]


def clean_class_name(name: str) -> str:
    """A label as words: ``dog_bark`` -> ``dog bark``, ``cafe/restaurant`` -> ``cafe or
    restaurant``, ``crackling_fire`` -> ``crackling fire``; case is kept."""
    words = name.replace("_", " ").replace("/", " or ")
    return re.sub(r"\s+", " ", words).strip()
