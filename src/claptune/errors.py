"""User-facing errors: the CLI prints them as one line and exits with code 2.

They survive pickling (a DataLoader worker or another process hands them back whole), and
``printable`` turns any file name into text every terminal and log can show.
"""

from __future__ import annotations

from collections.abc import Iterable


class ClaptuneError(Exception):
    """A problem with the user's input (a file, a name, a column), not a bug in claptune."""

    def __reduce__(self):
        # Exception's own pickling calls type(self)(*self.args): that breaks for subclasses
        # whose __init__ takes other arguments than the message (AudioDecodeError(path, reason))
        return _rebuild, (type(self), self.args), self.__dict__


def _rebuild(cls: type[ClaptuneError], args: tuple) -> ClaptuneError:
    return cls.__new__(cls, *args)  # BaseException.__new__ sets .args; __init__ is skipped


class AudioDecodeError(ClaptuneError):
    """An audio file is missing, empty, truncated or not audio."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read audio {printable(self.path)}: {reason}")


def printable(text: object) -> str:
    """``text`` with what a strict UTF-8 stream cannot write escaped.

    A file name that is not valid UTF-8 reaches Python as surrogate escapes
    (``bad\\udcff.flac``); it is shown with its original bytes as ``\\xNN``
    (``bad\\xff.flac``), so that printing or logging it never raises.
    """
    text = str(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that no byte string produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def disk_full(err: BaseException) -> str | None:
    """One line saying that the disk is full if ``err`` (or an exception it came from) says
    so: ``OSError`` ENOSPC/EDQUOT, or the same from safetensors, numpy or torch, which wrap it
    in their own types; else None."""
    import errno

    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        text = str(err)
        if (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
            sign in text for sign in ("No space left", "Disk quota exceeded", "file write failed")
        ):
            where = getattr(err, "filename", None)
            return (
                f"no space left on the device{f' (writing {printable(where)})' if where else ''};"
                " what was already written is kept: free some space and run the same command again"
            )
        err = err.__cause__ or err.__context__
    return None


class InputWarning(UserWarning):
    """Something in the user's input was dropped or merged; the run goes on without it."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'esc50'?"`` for the known name closest to ``word`` (spelling, case,
    ``-`` and ``_`` forgiven), or ``""`` when none is close: the tail of an unknown-name error."""
    import difflib

    choices = list(choices)

    def key(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "").replace(" ", "")

    same = [c for c in choices if key(c) == key(word)]
    close = same or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        by_key = {key(c): c for c in choices}
        close = [by_key[k] for k in difflib.get_close_matches(key(word), by_key, n=1, cutoff=0.6)]
    return f"; did you mean {close[0]!r}?" if close else ""
