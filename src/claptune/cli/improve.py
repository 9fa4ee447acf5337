"""``claptune improve``: make a model better at a target task without its labels, with proof.

    claptune improve --model default --target esc50 --root ../shared/data/esc50-subset --out runs/esc50

The target's clips are split (seeded, recorded; by default whole source recordings to one
side, never by label) into an adaptation part, whose
audio is used without labels, and a test part that is only scored; 3 splits x 3 training
seeds by default. RUN gets report.json, report.md, report.html (open it in a browser: before
and after accuracy with spreads, per-class bars, confusion matrices, the curated pairs to
listen to, the forgetting and transfer checks) and model/ (the improved model of split 0, seed 0, loadable
with ``claptune.load_model``).
"""

from __future__ import annotations

import argparse

from claptune.cli._common import (
    add_common_arguments,
    config_from_args,
    holds_out_folder,
    improve_and_print,
    sub_parser,
)
from claptune.improve.config import CURATION_METHODS, LOSSES


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "improve", __doc__)
    add_common_arguments(p)
    p.add_argument(
        "--methods",
        help=f"comma-separated curation methods of {', '.join(CURATION_METHODS)}; "
        "'none' fine-tunes on replay only (default: pseudo_refined)",
    )
    p.add_argument("--loss", choices=LOSSES, help="contrastive loss (default: hard)")
    p.add_argument(
        "--audio-per-class",
        type=int,
        help="best-scored curated pairs of each class playable in report.html (default: 2)",
    )
    p.add_argument(
        "--audio-samples",
        type=int,
        help="cap on all players in report.html, spread over the classes (default: no cap)",
    )
    p.add_argument("--no-save-model", action="store_true", help="do not write RUN/model")
    return p


@holds_out_folder
def run(args: argparse.Namespace) -> int:
    return improve_and_print(config_from_args(args), args.out, args.quiet)
