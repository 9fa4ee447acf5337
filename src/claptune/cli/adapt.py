"""``claptune adapt``: label your own unlabeled recordings and fine-tune a model on them.

    claptune adapt --model default --audio recordings/ --classes classes.txt --out runs/mine
    claptune adapt --audio clips/ --classes classes.txt --out RUN --eval esc50:data/esc50

No label is needed. RUN/predictions.csv gives every clip a label (path,label,confidence and the
runner-up), from the teacher's scores refined over all the clips together (--transductive).
Curation pairs the clips the teacher is surest of with their class's prompt (improve's default
curation and loss), the paired corpus is replayed, and a label-free guard decides on a held-out
slice of the clips (--guard-fraction) whether the student beats the teacher: RUN/model is the
one it keeps (loadable with ``claptune.load_model``, with its card; --keep-student writes a
student it did not keep to RUN/student). RUN also gets pairs.csv and a label-free report
(report.json, report.md, report.html): the class shares curation balanced to, pseudo-labels per
class, their confidence and margin, teacher/student agreement, the guard's decision, the
forgetting and transfer checks, and the curated clips to listen to. ``--eval TARGET:ROOT``
scores teacher and student on a labelled set (esc50, us8k, tut2017, folder or csv) and uses it
for nothing else.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from claptune.cli._common import (
    CORPUS_FLAGS,
    add_config_flags,
    add_run_flags,
    add_settings_flags,
    holds_out_folder,
    print_saved,
    sub_parser,
)
from claptune.errors import ClaptuneError, did_you_mean
from claptune.improve.config import TARGETS, UNLABELED

if TYPE_CHECKING:
    from claptune.improve.config import ImproveConfig
    from claptune.report.schema import AdaptReport


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "adapt", __doc__)
    add_config_flags(p, ["model", "audio", "class_names"], required=("audio", "class_names"))
    p.add_argument(
        "--eval",
        metavar="TARGET:ROOT",
        help=f"a labelled set to score before and after, never used otherwise; "
        f"TARGET one of {', '.join(TARGETS)} (e.g. esc50:data/esc50) "
        "(default: none)",
    )
    add_config_flags(
        p,
        [
            "seed",
            *CORPUS_FLAGS,
            "transduction",
            "class_head",
            "labels_from",
            "guard_fraction",
            "audio_per_class",
            "save_model",
            "keep_student",
        ],
        helps={
            "seed": "seed of the guard's held-out slice and of training (curation itself is "
            "deterministic)",
            "audio_per_class": (
                "best-scored curated pairs of each class playable in report.html",
                "1",
            ),
        },
    )
    add_settings_flags(p)
    add_run_flags(p)
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


def config_from_args(args: argparse.Namespace) -> ImproveConfig:
    """improve's configuration with the user's clips and class names as the target."""
    from claptune.cli._common import config_from_args as improve_config_from_args

    fixed: dict[str, Any] = {"target": UNLABELED}
    if args.eval:
        fixed["eval_target"], fixed["eval_root"] = parse_eval(args.eval)
    return improve_config_from_args(args, **fixed)


def print_summary(report: AdaptReport) -> None:
    from claptune.report.format import check_rows, eval_lines, guard_lines, summary_lines

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
    print_saved(result.model_dir, result.report.saved, result.report.student_dir, "adapted")
    return 0
