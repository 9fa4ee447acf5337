"""``claptune adapt``: fine-tune a model on your own unlabeled recordings and class names.

    claptune adapt --model default --audio recordings/ --classes classes.txt --out runs/mine
    claptune adapt --audio clips/ --classes classes.txt --out RUN --eval esc50:data/esc50

No label is needed: curation pairs the clips the teacher is surest of with their class's prompt
(improve's default curation and loss), the paired corpus is replayed, and RUN gets model/ (the
adapted model, with its card, loadable with ``claptune.load_model``), pairs.csv and a label-free
report (report.json, report.md, report.html): the class shares curation balanced to,
pseudo-labels per class, their confidence and margin, teacher/student agreement, the forgetting
and transfer checks, and the curated clips to listen to. ``--eval TARGET:ROOT`` scores teacher
and student on a labelled set (esc50, us8k, tut2017, folder or csv) and uses it for nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from claptune.cli._common import (
    _key_values,
    add_corpus_arguments,
    add_override_arguments,
    add_run_arguments,
    holds_out_folder,
    sub_parser,
)
from claptune.errors import ClaptuneError, did_you_mean
from claptune.improve.config import TARGETS

if TYPE_CHECKING:
    from claptune.improve.adapt import AdaptConfig
    from claptune.report.adapt_schema import AdaptReport


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "adapt", __doc__)
    p.add_argument(
        "--model",
        default="default",
        help="registered name, model folder or hub id (default: the embedded model)",
    )
    p.add_argument(
        "--audio",
        nargs="+",
        required=True,
        metavar="PATH",
        help="clip files, folders (searched recursively) or .txt lists of clips",
    )
    p.add_argument(
        "--classes",
        required=True,
        help="class names: a file with one per line (# comments and blank lines "
        "ignored) or 'a,b,c'",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder")
    p.add_argument(
        "--eval",
        metavar="TARGET:ROOT",
        help=f"a labelled set to score before and after, never used otherwise; "
        f"TARGET one of {', '.join(TARGETS)} (e.g. esc50:data/esc50) "
        "(default: none)",
    )
    p.add_argument("--seed", type=int, help="training seed (default: 0)")
    add_corpus_arguments(p)
    add_override_arguments(p)
    p.add_argument(
        "--audio-per-class",
        type=int,
        help="curated clips per class to listen to in report.html (default: 1)",
    )
    p.add_argument("--no-save-model", action="store_true", help="do not write RUN/model")
    p.add_argument(
        "--transductive",
        metavar="METHOD",
        help="how predictions.csv refines the scores (see --labels-from) over all clips together: "
        "claptune, sinkhorn, label_propagation, gaussian_em, entropy or none (default: claptune)",
    )
    p.add_argument(
        "--labels-from",
        choices=("teacher", "saved"),
        help="whose scores predictions.csv refines: the teacher (measured best) or the saved "
        "model (default: teacher)",
    )
    p.add_argument(
        "--guard-fraction",
        type=float,
        help="share of the clips held out of curation, on whose audio the label-free guard "
        "decides whether the student beats the teacher; 0 turns the guard off (default: 0.2)",
    )
    add_run_arguments(p)
    return p


def parse_eval(spec: str) -> tuple[str, str | None]:
    """``TARGET:ROOT`` (or ``TARGET`` alone: the data set's default location)."""
    target, _, root = spec.partition(":")
    if target not in TARGETS:
        raise ClaptuneError(
            f"--eval {spec!r}: TARGET must be one of {', '.join(TARGETS)} "
            f"(TARGET:ROOT, e.g. esc50:data/esc50){did_you_mean(target, TARGETS)}"
        )
    return target, root or None


def config_from_args(args: argparse.Namespace) -> AdaptConfig:
    from claptune.curation.inputs import class_names_from
    from claptune.improve.adapt import AdaptConfig

    values: dict[str, Any] = {
        "audio": tuple(args.audio),
        "model": args.model,
        "class_names": tuple(class_names_from(args.classes)),
    }
    flags = {
        "seed": args.seed,
        "corpus": args.corpus,
        "corpus_holdout": args.corpus_holdout,
        "templates": args.templates,
        "audio_per_class": args.audio_per_class,
        "on_error": args.on_error,
        "cache_dir": args.cache_dir,
        "transduction": args.transductive,
        "guard_fraction": args.guard_fraction,
        "labels_from": args.labels_from,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.eval:
        values["eval_target"], values["eval_root"] = parse_eval(args.eval)
    if args.curation:
        values["curation"] = _key_values(args.curation, "--curation")
    train = _key_values(args.train, "--train")
    if args.device is not None:
        train["device"] = args.device
    if train:
        values["train"] = train
    if args.no_save_model:
        values["save_model"] = False
    return AdaptConfig.from_dict(values)


def print_summary(report: AdaptReport) -> None:
    from claptune.report.adapt_format import check_rows, eval_lines, guard_lines, summary_lines

    for line in summary_lines(report):
        print(line)
    for line in guard_lines(report):
        print(line.replace("**", ""))
    for check, before, after in check_rows(report):
        print(f"{check}: {before} -> {after} %")
    if report.evaluation:
        for line in eval_lines(report.evaluation):
            print(line)
    if report.failed_clips:
        print(
            f"{len(report.failed_clips)} clips could not be decoded and were skipped "
            "(listed in report.json)"
        )


@holds_out_folder
def run(args: argparse.Namespace) -> int:
    from claptune.improve.adapt import run_adapt

    result = run_adapt(config_from_args(args), args.out, progress=not args.quiet)
    print_summary(result.report)
    print(f"report: {args.out / 'report.html'}")
    if result.model_dir is not None:
        print(f"adapted model: {result.model_dir}")
    return 0
