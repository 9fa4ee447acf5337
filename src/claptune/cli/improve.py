"""``claptune improve``: make a model better at a target task without its labels, with proof.

    claptune improve --model default --target esc50 --root ../shared/data/esc50-subset --out runs/esc50

The target's clips are split (seeded, recorded; by default whole source recordings to one
side, never by label) into an adaptation part, whose
audio is used without labels, and a test part that is only scored; 3 splits x 3 training
seeds by default. RUN gets report.json, report.md, report.html (open it in a browser: before
and after accuracy with spreads, per-class bars, confusion matrices, the curated pairs to
listen to, the forgetting and transfer checks) and model/ (the model worth saving: after the
measured runs, a student trained on every clip but a held-out slice, kept by the label-free
guard or replaced by the teacher; loadable with ``claptune.load_model``).
"""

from __future__ import annotations

import argparse

from claptune.cli._common import (
    add_common_arguments,
    add_config_flags,
    config_from_args,
    holds_out_folder,
    improve_and_print,
    sub_parser,
)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "improve", __doc__)
    add_common_arguments(p)
    add_config_flags(
        p,
        [
            "methods",
            "loss",
            "transduction",
            "class_head",
            "guard_fraction",
            "audio_per_class",
            "audio_samples",
            "save_model",
            "keep_student",
        ],
    )
    return p


@holds_out_folder
def run(args: argparse.Namespace) -> int:
    return improve_and_print(config_from_args(args), args.out, args.quiet)
