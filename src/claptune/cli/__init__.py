"""The claptune command line: the only place that parses argv.

Each sub-command lives in its own module of this package with two functions,
``add_parser(subparsers)`` and ``run(args) -> int``; ``main(argv)`` lets tests drive the CLI
in process. User errors (``ClaptuneError``) print one line and exit with code 2.

Set-up shared by every sub-command lives here: ``--log-level`` (accepted before or after the
sub-command) configures ``logging`` for the ``claptune`` loggers, with timestamps (and the
torchrun rank) so that a cluster job's log reads in order; progress bars are tqdm's, written
through ``logging_redirect_tqdm`` so log lines do not tear them; a sub-command's
``--quiet``/``--no-progress`` also silences the Hugging Face download bars; and when stderr is
not a terminal (a batch job's log file) bars refresh at most every 30 s.
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

from claptune.errors import ClaptuneError, InputWarning, printable

# sub-command name -> module in claptune.cli; the order is the order of `claptune --help`
COMMANDS: dict[str, str] = {
    "models": "claptune.cli.models",
    "embed": "claptune.cli.embed",
    "zeroshot": "claptune.cli.zeroshot",
    "curate": "claptune.cli.curate",
    "train": "claptune.cli.train",
    "pretrain": "claptune.cli.pretrain",
    "improve": "claptune.cli.improve",
    "adapt": "claptune.cli.adapt",
    "demo": "claptune.cli.demo",
    "ablate": "claptune.cli.ablate",
    "push": "claptune.cli.push",
}

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
LOG_LEVEL_HELP = (f"how much claptune logs to stderr: {', '.join(LOG_LEVELS)} "
                  f"(default: {DEFAULT_LOG_LEVEL}; other libraries log warnings and errors)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claptune",
        description="Improve a pretrained audio-text (CLAP) model on a new domain without labels.",
    )
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=DEFAULT_LOG_LEVEL,
                        help=LOG_LEVEL_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name)
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
        # also after the sub-command; SUPPRESS keeps a value given before it
        sub_parser.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
                                help=LOG_LEVEL_HELP)
    return parser


@contextlib.contextmanager
def logging_settings(level: str) -> Iterator[None]:
    """Log lines on stderr with time, level and logger; claptune's at ``level``.

    Undone on exit (handler, levels, warnings capture), so that ``main()`` called in process
    leaves no global state behind."""
    rank = os.environ.get("RANK")
    where = f" [rank {rank}]" if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s", "%Y-%m-%d %H:%M:%S"))
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
    """Quiet sub-commands silence every bar; a log file gets a bar line at most every 30 s.

    Undone on exit, so that ``main()`` called in process leaves no global state behind."""
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    saved = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "TQDM_MININTERVAL")}
    hf_was_disabled = are_progress_bars_disabled()
    quiet = getattr(args, "quiet", False) or getattr(args, "no_progress", False)
    if quiet:
        disable_progress_bars()
        os.environ["TQDM_DISABLE"] = "1"  # bars created without an explicit disable=
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", "30")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        with logging_settings(args.log_level), progress_settings(args), logging_redirect_tqdm(), \
                warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command, warnings.showwarning)
            return int(args._run(args) or 0)
    except ClaptuneError as err:
        print(f"claptune {args.command}: error: {printable(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("claptune: interrupted", file=sys.stderr)
        return 130


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
