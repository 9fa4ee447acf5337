"""Helpers shared by the CLI modules, which never import each other: the one vocabulary of
flags (``--quiet``, ``--device``, ``--num-workers``, ``--cache-dir``, ``--template``), the help
formatter that shows every default, the flags and config of improve/ablate/demo and their
printed summary."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claptune.errors import ClaptuneError

if TYPE_CHECKING:
    from claptune.improve.config import ImproveConfig
    from claptune.report.schema import Report


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the module docstring's layout and appends each option's default to its help.

    An option whose default is None (a value that comes from a config file or a library
    default) says its default in its own help text; tests/test_cli.py checks that every option
    of every sub-command shows one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default in (None, argparse.SUPPRESS)
            or not action.option_strings
        ):
            return text
        if action.default is False and action.nargs == 0:
            return f"{text} (default: off)"
        shown = action.default
        if isinstance(shown, (list, tuple)):
            shown = " ".join(map(str, shown)) or "none"
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def sub_parser(
    sub: argparse._SubParsersAction, name: str, doc: str | None, **kwargs: Any
) -> argparse.ArgumentParser:
    """A sub-command's parser: its module docstring as the description, every default shown.
    Its one-line help comes from the registry in ``claptune.cli`` (``COMMANDS``)."""
    p = sub.add_parser(name, description=doc, formatter_class=HelpFormatter, **kwargs)
    add_encoding(p)
    return p


def add_encoding(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encoding",
        default=None,
        help="encoding of the text files you pass (audio lists, class lists, captions, pairs, "
        "CSV manifests); by default UTF-8 (a byte-order mark is skipped) and anything else is "
        "refused",
    )


def alias(p: argparse.ArgumentParser, *flags: str, dest: str, **kwargs: Any) -> None:
    """An old spelling of a flag: still accepted, hidden from --help."""
    p.add_argument(*flags, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars, nor the progress log lines of improve, adapt, ablate and demo "
        "(warnings and errors stay; see --log-level)",
    )
    alias(p, "--no-progress", dest="quiet", action="store_true")


def add_on_error(p: argparse.ArgumentParser, skip: str, from_config: bool = False) -> None:
    """``--on-error raise|skip`` (default raise): ``skip`` says what skipping does in this
    command. ``from_config``: the flag stays None when not given, so that a ``--config``
    file's value (else the config class's own default, raise) applies."""
    p.add_argument(
        "--on-error",
        choices=["raise", "skip"],
        default=None if from_config else "raise",
        help=f"unreadable audio: stop with an error (raise) or {skip} (skip) (default: raise)",
    )


def add_device(p: argparse.ArgumentParser, what: str = "", from_config: bool = False) -> None:
    """``--device`` (default auto): ``what`` the device runs (e.g. training); ``from_config``:
    None when not given, so that a ``--config`` file's value applies."""
    p.add_argument(
        "--device",
        default=None if from_config else "auto",
        help=f"torch device{' of ' + what if what else ''}: auto (cuda if available, else "
        "cpu), cpu, cuda, cuda:1, ..." + (" (default: auto)" if from_config else ""),
    )


def model_device(name: str) -> dict[str, str]:
    """``load_model`` keyword arguments for ``--device`` (auto picks cuda where there is one)."""
    if name == "auto":
        import torch

        name = "cuda" if torch.cuda.is_available() else "cpu"
    return {"device": name}


NUM_WORKERS_HELP = "audio decoding workers beside the main process; 0 decodes inline"


def add_num_workers(p: argparse.ArgumentParser, default: int | None = 2) -> None:
    p.add_argument(
        "--num-workers",
        type=int,
        default=default,
        help=NUM_WORKERS_HELP + ("" if default is not None else " (default: 2)"),
    )


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The folder of ``--cache-dir`` (its one default: claptune.improve.config.default_cache_dir),
    or None under ``--no-cache``."""
    if getattr(args, "no_cache", False):
        return None
    if args.cache_dir is not None:
        return Path(args.cache_dir)
    from claptune.improve.config import default_cache_dir

    return Path(default_cache_dir())


CACHE_DIR_HELP = (
    "where embeddings and frozen features are kept between runs "
    "(default: $CLAPTUNE_CACHE or ~/.cache/claptune)"
)


def add_cache_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cache-dir", type=Path, default=None, help=CACHE_DIR_HELP)
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")


def add_template(p: argparse.ArgumentParser) -> None:
    """``--template`` (repeatable), generated from ``ImproveConfig.templates``."""
    add_config_flags(p, ["templates"])


# the ImproveConfig fields each run command sets by a flag of its own (generated from the
# dataclass's fields: name, type, choices, default and help live there, once)
DATA_FLAGS = ("model", "target", "root", "download")
SPLIT_FLAGS = ("n_splits", "n_seeds", "test_fraction", "split", "seed")
CORPUS_FLAGS = ("corpus", "corpus_holdout", "templates")
RUN_FLAGS = ("on_error", "cache_dir")


def add_fields(
    p: argparse.ArgumentParser,
    cls: type,
    names: Sequence[str],
    required: Sequence[str] = (),
    helps: Mapping[str, str | tuple[str, str]] | None = None,
) -> None:
    """One flag per field of the dataclass ``cls`` in ``names``, generated from the field: its
    name (or ``metadata["flag"]``), type, choices, help (``helps[name]`` where a command uses
    the field its own way) and default. A flag not given parses to None, so that a
    ``--config`` file's value (else the field's default) applies."""
    from dataclasses import fields

    from claptune.typed import field_default

    by_name = {f.name: f for f in fields(cls)}
    for name in names:
        f = by_name[name]
        meta = dict(f.metadata)
        if helps and name in helps:  # text, or (text, default text)
            text = helps[name]
            meta["help"], meta["default_text"] = (
                text if isinstance(text, tuple) else (text, meta.get("default_text"))
            )
        flag = meta.get("flag", "--" + name.replace("_", "-"))
        default = meta.get("default_text")
        if default is None:
            value = field_default(f)
            default = (
                " ".join(map(str, value))
                if isinstance(value, (tuple, list))
                else "none"
                if value is None
                else "off"
                if value is False
                else str(value)
            )
        kwargs: dict[str, Any] = {"dest": name, "default": None}
        if name in required:
            kwargs["required"] = True
            kwargs["help"] = f"{meta['help']} (required)"
        else:
            kwargs["help"] = f"{meta['help']} (default: {default})".replace("%", "%%")
        if f.type.startswith("bool"):
            kwargs["action"] = "store_const"
            kwargs["const"] = not meta.get("negate", False)
        else:
            kwargs["type"] = (
                int if f.type.startswith("int") else float if "float" in f.type else str
            )
            for key in ("choices", "nargs", "action", "metavar"):
                if key in meta:
                    kwargs[key] = meta[key]
            if "metavar" not in kwargs and "choices" not in kwargs:
                kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        p.add_argument(flag, **kwargs)


def add_config_flags(
    p: argparse.ArgumentParser,
    names: Sequence[str],
    required: Sequence[str] = (),
    helps: Mapping[str, str | tuple[str, str]] | None = None,
) -> None:
    """``add_fields`` of ``ImproveConfig``: the flags of improve, adapt, ablate and demo."""
    from claptune.improve.config import ImproveConfig

    add_fields(p, ImproveConfig, names, required, helps)


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """KEY=VALUE overrides of ``ImproveConfig.curation`` and ``.train`` (their keys listed from
    the dataclasses), curation thresholds by method, and the training device."""
    from dataclasses import fields

    from claptune.curation.settings import CurationSettings
    from claptune.train.config import TrainConfig

    p.add_argument(
        "--curation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="claptune.curation.CurationSettings override, e.g. du_top_k=5; repeatable; keys: "
        + ", ".join(f.name for f in fields(CurationSettings))
        + " (default: none)",
    )
    p.add_argument(
        "--threshold",
        action="extend",
        nargs="+",
        default=[],
        metavar="METHOD=VALUE",
        help="curation threshold of one method: a cosine (ds=0.6) or a quantile of "
        "the teacher's scores (ds=q0.9); several after one flag or repeated "
        "(default: the quantile preset of claptune.curation.methods)",
    )
    p.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="claptune.train.TrainConfig override, e.g. epochs=10; repeatable; keys: "
        + ", ".join(f.name for f in fields(TrainConfig))
        + " (default: none)",
    )
    add_device(p, "training", from_config=True)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """--config, the run folder, undecodable clips, the cache, progress and --overwrite."""
    p.add_argument(
        "--config", type=Path, help="ImproveConfig JSON; flags given override it (default: none)"
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    add_config_flags(p, RUN_FLAGS)
    add_quiet(p)
    add_overwrite(p)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that improve and ablate share."""
    add_config_flags(p, DATA_FLAGS + SPLIT_FLAGS + CORPUS_FLAGS, required=("target",))
    add_settings_flags(p)
    add_run_flags(p)


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the finished run in --out (the files it wrote; nothing else there)",
    )


def holds_out_folder(run: Callable[[argparse.Namespace], int]) -> Callable:
    """Wrap a sub-command's ``run``: one run per ``--out`` (``claptune.runfolder``)."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from claptune.runfolder import hold_run_folder

        with hold_run_folder(args.out, args.command, overwrite=args.overwrite):
            return run(args)

    return wrapped


def key_values(items: list[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict, each VALUE read as JSON where it is (else a string)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ClaptuneError(f"{what} {item!r} is not KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value  # a bare string such as trainable=projections
    return out


def _flag_value(name: str, value: Any) -> Any:
    """A generated flag's parsed value as the config field takes it."""
    if name == "methods":
        return () if value.strip().lower() == "none" else value
    if name == "class_names":
        from claptune.curation.inputs import class_names_from

        return tuple(class_names_from(value))
    return value


def config_from_args(args: argparse.Namespace, **fixed: Any) -> ImproveConfig:
    """ImproveConfig from --config, then the generated flags given, then the curation and
    training overrides, then ``fixed`` values; ``ImproveConfig.from_dict`` checks the keys."""
    from dataclasses import fields

    from claptune.improve.config import ImproveConfig

    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        from claptune.textfiles import read_text

        try:
            values = json.loads(read_text(args.config, what="config"))
        except (OSError, json.JSONDecodeError) as err:
            raise ClaptuneError(f"cannot read config {args.config}: {err}") from None
    for f in fields(ImproveConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("curation", "train"):
            values[f.name] = _flag_value(f.name, value)
    curation = dict(values.get("curation", {}))
    curation.update(key_values(getattr(args, "curation", []), "--curation"))
    curation.update(
        {
            f"{method}_threshold": value
            for method, value in key_values(getattr(args, "threshold", []), "--threshold").items()
        }
    )
    if curation:
        values["curation"] = curation
    train = key_values(getattr(args, "train", []), "--train")
    if getattr(args, "device", None) is not None:
        train["device"] = args.device
    if train:
        values["train"] = {**values.get("train", {}), **train}
    values.update(fixed)
    return ImproveConfig.from_dict(values)


def print_summary(report: Report) -> None:
    from claptune.report.format import (
        class_head_lines,
        headline_rows,
        label_free_lines,
        paired_test_lines,
        prior_lines,
    )

    for name, before, after, change in headline_rows(report):
        print(f"{name:38s} before {before:>12s}   after {after:>12s}   change {change:>12s}")
    lines = class_head_lines(report) + paired_test_lines(report)
    for line in lines + prior_lines(report) + label_free_lines(report):
        print(line)
    fg = report.forgetting
    if fg:
        parts = [f"{k} {100 * fg.before[k]:.1f} -> {100 * fg.after[k].mean:.1f}" for k in fg.before]
        print("forgetting check (held-out corpus retrieval, %): " + ", ".join(parts))
    tr = report.transfer
    if tr:
        print(
            f"transfer check ({tr.n_clips} held-out corpus clips naming {tr.n_classes} "
            f"target classes, %): accuracy {100 * tr.before.accuracy:.1f} -> "
            f"{100 * tr.after.accuracy.mean:.1f}, class mean "
            f"{100 * tr.before.class_mean_accuracy:.1f} -> "
            f"{100 * tr.after.class_mean_accuracy.mean:.1f}"
        )


def improve_and_print(config: ImproveConfig, out: Path, quiet: bool) -> int:
    """Run improve and print its summary and where the report and model are (improve, demo)."""
    from claptune.improve import run_improve

    result = run_improve(config, out, progress=not quiet)
    print_summary(result.report)
    print(f"report: {out / 'report.html'}")
    print_saved(result.model_dir, result.report.model_run.saved, result.report.student_dir)
    return 0


def print_saved(model_dir, saved: str, student_dir: str | None, made: str = "improved") -> None:
    """Where the saved model (and ``--keep-student``'s student) went, and which model it is."""
    if model_dir is not None:
        what = (
            "saved model (the teacher: the guard did not keep the student)"
            if saved == "teacher"
            else f"{made} model"
        )
        print(f"{what}: {model_dir}")
        from claptune.evaluate.prototypes import head_summary

        head = head_summary(model_dir)
        if head:
            print(f"  with its class head ({head})")
    if student_dir:
        print(f"student the guard did not keep: {student_dir}")
