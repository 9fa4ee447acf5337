"""Helpers shared by the CLI modules, which never import each other: the one vocabulary of
flags (``--quiet``, ``--device``, ``--num-workers``, ``--cache-dir``, ``--template``), the help
formatter that shows every default, the flags and config of improve/ablate/demo and their
printed summary."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
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
        "--quiet", action="store_true", help="no progress bars (log lines stay; see --log-level)"
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


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...",
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


TEMPLATE_HELP = (
    "zero-shot prompts: ensemble (8 templates averaged, as in improve), the set "
    "named default (the paper's 'this is a sound of {}'), or your own template with "
    "{} for the class name; repeat to average several (default: ensemble)"
)


def add_template(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--template", action="append", dest="templates", metavar="TEMPLATE", help=TEMPLATE_HELP
    )


def add_common_arguments(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    """The flags that improve and ablate share."""
    from claptune.improve.config import STRATEGIES, TARGETS

    p.add_argument(
        "--model",
        default="default",
        help="registered name, model folder or hub id (default: the embedded model)",
    )
    if target_required:
        p.add_argument("--target", required=True, choices=TARGETS, help="target task (required)")
    p.add_argument(
        "--root", help="local copy of the target data set, a folder (a CSV for csv) (default: none)"
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="download the target data set when --root is not given",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--splits", type=int, help="adaptation/test splits (default: 3)")
    p.add_argument("--seeds", type=int, help="training seeds per split (default: 3)")
    p.add_argument(
        "--test-fraction", type=float, help="share of the clips scored only (default: 0.5)"
    )
    p.add_argument(
        "--split",
        choices=STRATEGIES,
        help="how clips are split (default: auto): auto = grouped where the data set "
        "names each clip's source recording, else random; stratified hands the "
        "unlabeled pool the task's exact class shares (for comparison only)",
    )
    p.add_argument("--seed", type=int, help="base seed of splits and training (default: 0)")
    add_corpus_arguments(p)
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
    add_override_arguments(p)
    p.add_argument(
        "--config", type=Path, help="ImproveConfig JSON; flags given override it (default: none)"
    )
    add_run_arguments(p)


CORPUS_HELP = (
    "paired captioned corpus, replayed in fine-tuning and held out for the forgetting and "
    "transfer checks: a folder with manifest.csv, webdataset shards, or a Hugging Face "
    "dataset (a Hub id, a save_to_disk folder or an audiofolder with a caption column; "
    "needs claptune[datasets]); '' for none (default: $CLAPTUNE_CORPUS, else "
    "../shared/data/captioned-sfx where it exists, else none)"
)


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    """The paired corpus and the prompts."""
    p.add_argument("--corpus", help=CORPUS_HELP)
    p.add_argument(
        "--corpus-holdout",
        type=float,
        help="share of the corpus held out for the forgetting check (default: 0.1)",
    )
    add_template(p)


def add_override_arguments(p: argparse.ArgumentParser) -> None:
    """KEY=VALUE overrides of the curation and training settings, their keys listed."""
    p.add_argument(
        "--curation",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="claptune.curation.CurationSettings override, e.g. du_top_k=5; "
        "repeatable; keys: "
        + ", ".join(field_names("claptune.curation.pipeline", "CurationSettings"))
        + " (default: none)",
    )
    p.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="claptune.train.TrainConfig override, e.g. epochs=10; repeatable; keys: "
        + ", ".join(field_names("claptune.train.config", "TrainConfig"))
        + " (default: none)",
    )


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Undecodable clips, the device, the feature cache and progress."""
    add_on_error(p, "leave the clip out and list it in the report", from_config=True)
    p.add_argument(
        "--device",
        help="torch device of training: auto (cuda if available, else cpu), cpu, "
        "cuda, cuda:1, ... (default: auto)",
    )
    p.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    add_quiet(p)
    add_overwrite(p)


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the finished run in --out (its report and model; nothing else there)",
    )


def holds_out_folder(run: Callable[[argparse.Namespace], int]) -> Callable:
    """Wrap a sub-command's ``run``: one run per ``--out`` (``claptune.runfolder``)."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from claptune.runfolder import hold_run_folder

        with hold_run_folder(args.out, args.command, overwrite=args.overwrite):
            return run(args)

    return wrapped


def field_names(module: str, class_name: str) -> list[str]:
    """The fields of a dataclass, read from its module's source without importing it, so that
    ``--help`` lists the keys of ``CurationSettings`` and ``TrainConfig`` without loading torch.
    The dataclass stays their one home; tests/test_cli.py checks that both lists agree."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"no module {module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return [
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            ]
    raise LookupError(f"no class {class_name} in {module}")


def _key_values(items: list[str], what: str) -> dict[str, Any]:
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


def config_from_args(args: argparse.Namespace, **fixed: Any) -> ImproveConfig:
    """ImproveConfig from --config, then the flags given, then ``fixed`` values."""
    from claptune.improve.config import ImproveConfig

    values: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        from claptune.textfiles import read_text

        try:
            values = json.loads(read_text(args.config, what="config"))
        except (OSError, json.JSONDecodeError) as err:
            raise ClaptuneError(f"cannot read config {args.config}: {err}") from None
    flags = {
        "model": args.model,
        "target": getattr(args, "target", None),
        "root": args.root,
        "n_splits": args.splits,
        "n_seeds": args.seeds,
        "test_fraction": args.test_fraction,
        "split": getattr(args, "split", None),
        "seed": args.seed,
        "corpus": args.corpus,
        "corpus_holdout": args.corpus_holdout,
        "templates": args.templates,
        "on_error": args.on_error,
        "cache_dir": getattr(args, "cache_dir", None),
        "loss": getattr(args, "loss", None),
        "audio_samples": getattr(args, "audio_samples", None),
        "audio_per_class": getattr(args, "audio_per_class", None),
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.download:
        values["download"] = True
    methods = getattr(args, "methods", None)
    if methods is not None:
        values["methods"] = () if methods.strip().lower() == "none" else methods
    if getattr(args, "no_save_model", False):
        values["save_model"] = False
    curation = dict(values.get("curation", {}))
    curation.update(_key_values(getattr(args, "curation", []), "--curation"))
    curation.update(
        {
            f"{method}_threshold": value
            for method, value in _key_values(args.threshold, "--threshold").items()
        }
    )
    if curation:
        values["curation"] = curation
    train = _key_values(args.train, "--train")
    if getattr(args, "device", None) is not None:
        train["device"] = args.device
    if train:
        values["train"] = {**values.get("train", {}), **train}
    values.update(fixed)
    return ImproveConfig.from_dict(values)


def print_summary(report: Report) -> None:
    from claptune.report.format import (
        headline_rows,
        label_free_lines,
        paired_test_lines,
        prior_lines,
    )

    for name, before, after, change in headline_rows(report):
        print(f"{name:38s} before {before:>12s}   after {after:>12s}   change {change:>12s}")
    for line in paired_test_lines(report) + prior_lines(report) + label_free_lines(report):
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
    if result.model_dir is not None:
        print(f"improved model: {result.model_dir}")
    return 0
