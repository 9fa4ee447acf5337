"""Helpers shared by the CLI modules, which never import each other: the flags and config of
improve/ablate/demo (and the flags adapt shares with them) and their printed summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claptune.errors import ClaptuneError

if TYPE_CHECKING:
    from claptune.improve.config import ImproveConfig
    from claptune.report.schema import Report


def add_common_arguments(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    """The flags that improve and ablate share."""
    from claptune.improve.config import TARGETS
    from claptune.improve.splits import STRATEGIES

    p.add_argument("--model", default="default",
                   help="registered name, model folder or hub id (default: the embedded model)")
    if target_required:
        p.add_argument("--target", required=True, choices=TARGETS, help="target task")
    p.add_argument("--root", help="local copy of the target data set (a folder; a CSV for csv)")
    p.add_argument("--download", action="store_true",
                   help="download the target data set when --root is not given")
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument("--splits", type=int, help="adaptation/test splits (3)")
    p.add_argument("--seeds", type=int, help="training seeds per split (3)")
    p.add_argument("--test-fraction", type=float, help="share of the clips scored only (0.5)")
    p.add_argument("--split", choices=STRATEGIES,
                   help="how clips are split (auto): auto = grouped where the data set names each "
                        "clip's source recording, else random; stratified hands the unlabeled "
                        "pool the task's exact class shares (for comparison only)")
    p.add_argument("--seed", type=int, help="base seed of splits and training (0)")
    add_corpus_arguments(p)
    p.add_argument("--threshold", action="append", default=[], metavar="METHOD=VALUE",
                   help="curation threshold of one method: a cosine (ds=0.6) or a quantile of "
                        "the teacher's scores (ds=q0.9); repeatable")
    add_override_arguments(p)
    p.add_argument("--config", type=Path, help="ImproveConfig JSON; flags given override it")
    add_run_arguments(p)


def add_corpus_arguments(p: argparse.ArgumentParser) -> None:
    """The paired corpus and the prompts (improve, ablate, adapt)."""
    p.add_argument("--corpus", help="paired captioned corpus (manifest.csv folder) for replay "
                                    "and DS captions (default: $CLAPTUNE_CORPUS or ../shared/data/captioned-sfx)")
    p.add_argument("--corpus-holdout", type=float,
                   help="share of the corpus held out for the forgetting check (0.1)")
    p.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                   help="zero-shot prompts: a set (default, ensemble) or a template with {} for "
                        "the class name; repeat to combine (default: ensemble)")


def add_override_arguments(p: argparse.ArgumentParser) -> None:
    """KEY=VALUE overrides of the curation and training settings (improve, ablate, adapt)."""
    p.add_argument("--curation", action="append", default=[], metavar="KEY=VALUE",
                   help="claptune.curation.CurationSettings override, e.g. du_top_k=5; repeatable")
    p.add_argument("--train", action="append", default=[], metavar="KEY=VALUE",
                   help="claptune.train.TrainConfig override, e.g. epochs=10; repeatable")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Undecodable clips, the feature cache and progress (improve, ablate, adapt)."""
    p.add_argument("--on-error", choices=["raise", "skip"], help="undecodable clips: stop or skip")
    p.add_argument("--cache-dir", help="where frozen features are kept between runs "
                                       "(default: $CLAPTUNE_CACHE or ~/.cache/claptune)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


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
        try:
            values = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ClaptuneError(f"cannot read config {args.config}: {err}") from None
    flags = {
        "model": args.model, "target": getattr(args, "target", None), "root": args.root,
        "n_splits": args.splits, "n_seeds": args.seeds, "test_fraction": args.test_fraction,
        "split": getattr(args, "split", None),
        "seed": args.seed, "corpus": args.corpus, "corpus_holdout": args.corpus_holdout,
        "templates": args.templates, "on_error": args.on_error,
        "cache_dir": getattr(args, "cache_dir", None),
        "loss": getattr(args, "loss", None), "audio_samples": getattr(args, "audio_samples", None),
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
    curation.update({f"{method}_threshold": value for method, value
                     in _key_values(args.threshold, "--threshold").items()})
    if curation:
        values["curation"] = curation
    if args.train:
        values["train"] = {**values.get("train", {}), **_key_values(args.train, "--train")}
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
        parts = [f"{k} {100 * fg.before[k]:.1f} -> {100 * fg.after[k].mean:.1f}"
                 for k in fg.before]
        print("forgetting check (held-out corpus retrieval, %): " + ", ".join(parts))
    tr = report.transfer
    if tr:
        print(f"transfer check ({tr.n_clips} held-out corpus clips naming {tr.n_classes} "
              f"target classes, %): accuracy {100 * tr.before.accuracy:.1f} -> "
              f"{100 * tr.after.accuracy.mean:.1f}, class mean "
              f"{100 * tr.before.class_mean_accuracy:.1f} -> "
              f"{100 * tr.after.class_mean_accuracy.mean:.1f}")


def improve_and_print(config: ImproveConfig, out: Path, quiet: bool) -> int:
    """Run improve and print its summary and where the report and model are (improve, demo)."""
    from claptune.improve import run_improve

    result = run_improve(config, out, progress=not quiet)
    print_summary(result.report)
    print(f"report: {out / 'report.html'}")
    if result.model_dir is not None:
        print(f"improved model: {result.model_dir}")
    return 0
