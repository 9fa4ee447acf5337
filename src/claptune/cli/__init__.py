"""The claptune command line: the only place that parses argv.

Each sub-command lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; ``main(argv)`` lets tests drive the CLI
in process. User errors (``ClaptuneError``) print one line and exit with code 2.

Set-up shared by every sub-command lives here: ``--log-level`` (accepted before or after the
sub-command) configures ``logging`` for the ``claptune`` loggers, with timestamps (and the
torchrun rank) so that a cluster job's log reads in order; progress bars are tqdm's, written
through ``logging_redirect_tqdm`` so log lines do not tear them; a sub-command's
``--quiet`` also silences the Hugging Face download bars; and when stderr is
not a terminal (a batch job's log file) a bar shows after 30 s and refreshes at most every
30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence

from claptune.errors import ClaptuneError, InputWarning, did_you_mean, disk_full, printable

# sub-command name -> (module in claptune.cli, one-line help); the order is `claptune --help`'s.
# The help is written here so that `claptune --help` lists every command without importing
# any of them (tests/test_cli.py checks that it matches each module's own parser).
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("claptune.cli.models", "list the registered model names"),
    "embed": ("claptune.cli.embed", "embed audio or captions into an on-disk store"),
    "zeroshot": (
        "claptune.cli.zeroshot",
        "zero-shot classification accuracy on a labelled data set",
    ),
    "curate": (
        "claptune.cli.curate",
        "curate pseudo audio-text pairs (du, ds, ads, a2a, pseudo, pseudo_refined)",
    ),
    "train": (
        "claptune.cli.train",
        "fine-tune a model on curated pairs (student vs frozen teacher)",
    ),
    "pretrain": ("claptune.cli.pretrain", "train the default model's heads on a captioned corpus"),
    "improve": ("claptune.cli.improve", "curate, fine-tune and report: the whole method"),
    "adapt": ("claptune.cli.adapt", "fine-tune on your own unlabeled clips and class names"),
    "demo": ("claptune.cli.demo", "improve the default model on ESC-50, end to end"),
    "ablate": ("claptune.cli.ablate", "compare curation methods and losses on the same splits"),
    "push": ("claptune.cli.push", "upload a saved model folder to the Hugging Face Hub"),
}

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
LOG_LEVEL_HELP = (
    f"how much claptune logs to stderr: {', '.join(LOG_LEVELS)} "
    f"(default: {DEFAULT_LOG_LEVEL}; other libraries log warnings and errors)"
)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command that ``argv`` names (None for ``claptune --help`` and the like)."""
    skip_next = False
    for token in argv:
        if skip_next:
            skip_next = False
        elif token == "--log-level":
            skip_next = True
        elif not token.startswith("-"):
            return token
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with ``argv`` only the sub-command it names in full.

    Sub-commands are registered lazily: a command's module (and whatever it imports, torch
    included) loads only when that command runs or shows its own help, so ``claptune --help``
    and ``claptune models`` start in a fraction of a second (bench/bench_cli.py)."""
    from claptune import __version__

    parser = Parser(
        prog="claptune",
        description="Improve a pretrained audio-text (CLAP) model on a new domain without labels.",
    )
    parser.add_argument("--version", action="version", version=f"claptune {__version__}")
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=DEFAULT_LOG_LEVEL, help=LOG_LEVEL_HELP
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None if argv is None else chosen_command(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        if argv is not None and name != wanted:
            sub.add_parser(name, help=help_text)  # listed in --help; never parsed
            continue
        module = importlib.import_module(module_name)
        sub_parser = module.add_parser(_Registrar(sub, help_text))
        sub_parser.set_defaults(_run=module.run)
        # also after the sub-command; SUPPRESS keeps a value given before it
        sub_parser.add_argument(
            "--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS, help=LOG_LEVEL_HELP
        )
    return parser


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``claptune improve: error: ...`` and where to look,
    without the usage block; an unknown choice (a sub-command, a target, a loss) says which
    known one it is closest to."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        choices = action.choices
        if choices is not None and value not in choices:
            known = ", ".join(map(str, choices))
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r}{did_you_mean(str(value), map(str, choices))} "
                f"(choose from {known})",
            )

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Registrar:
    """What a command module's ``add_parser`` receives: the sub-parsers action, with the
    command's one-line help from ``COMMANDS`` filled in (the same text lazy or not)."""

    def __init__(self, sub: argparse._SubParsersAction, help_text: str):
        self._sub, self._help = sub, help_text

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("help", self._help)
        return self._sub.add_parser(name, **kwargs)


@contextlib.contextmanager
def logging_settings(level: str) -> Iterator[None]:
    """Log lines on stderr with time, level and logger; claptune's at ``level``.

    Undone on exit (handler, levels, warnings capture), so that ``main()`` called in process
    leaves no global state behind."""
    rank = os.environ.get("RANK")
    where = (
        f" [rank {rank}]" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    root, ours = logging.getLogger(), logging.getLogger("claptune")
    saved = (root.level, ours.level)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings.warn from the library becomes a log line
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


@contextlib.contextmanager
def progress_settings(args: argparse.Namespace) -> Iterator[None]:
    """Quiet sub-commands silence every bar; a log file gets a bar line at most every 30 s, and
    none for a bar done sooner (training's epoch bars, a cached embedding pass).

    Through TQDM_DISABLE / TQDM_MININTERVAL / TQDM_DELAY, which tqdm reads once, when it is first imported:
    ``main`` imports it only inside this context, so a ``claptune`` process gets them; a
    process that imported tqdm before calling ``main()`` keeps its own settings. Undone on
    exit, so that ``main()`` called in process leaves no global state behind."""
    saved = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "TQDM_MININTERVAL", "TQDM_DELAY")}
    quiet = getattr(args, "quiet", False)
    if quiet:  # huggingface_hub only then: `claptune models` starts without it
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        hf_was_disabled = are_progress_bars_disabled()
        disable_progress_bars()
        os.environ["TQDM_DISABLE"] = "1"  # bars created without an explicit disable=
    if not sys.stderr.isatty():  # a bar shows after 30 s and refreshes every 30 s, no sooner
        os.environ.setdefault("TQDM_MININTERVAL", "30")
        os.environ.setdefault("TQDM_DELAY", "30")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if quiet and not hf_was_disabled:
            enable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)

    from claptune.textfiles import default_encoding

    try:
        with (
            stop_signals(),
            default_encoding(getattr(args, "encoding", None)),
            logging_settings(args.log_level),
            progress_settings(args),
        ):
            # imported only now: tqdm reads TQDM_* once, when first imported (progress_settings)
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm(), warnings.catch_warnings():
                warnings.showwarning = _one_line_warning(args.command, warnings.showwarning)
                return int(args._run(args) or 0)
    except ClaptuneError as err:
        print(f"claptune {args.command}: error: {printable(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("claptune: interrupted", file=sys.stderr)
        return 130
    except Terminated as err:
        print(f"claptune: stopped by signal {err.signum}", file=sys.stderr)
        return 128 + err.signum
    except Exception as err:
        if (full := disk_full(err)) is None:
            raise
        print(f"claptune {args.command}: error: {full}", file=sys.stderr)
        return 2


class Terminated(BaseException):
    """SIGTERM / SIGHUP (``timeout``, ``kill``, a batch scheduler's cancel) raised in the main
    thread like Ctrl-C, so that a run unwinds: a failed ``--overwrite`` puts the earlier run
    back (``claptune.runfolder``) and partial files are cleaned up as on an interrupt."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``Terminated`` while a command runs (main thread only);
    the previous handlers come back on exit."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated(signum)

    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, raise_terminated)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _one_line_warning(command: str, show):
    """Print claptune's own warnings about the user's input as one line, like its errors."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"claptune {command}: warning: {printable(message)}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def entry_point() -> None:
    sys.exit(main())
