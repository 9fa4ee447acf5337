"""``claptune demo``: ``improve`` with the embedded default model on ESC-50.

    claptune demo                       # ESC-50 in $CLAPTUNE_DATA (or $CLAPTUNE_DATA/esc50), else downloaded
    claptune demo --root ../shared/data/esc50-subset --out runs/demo

Everything of ``claptune improve`` applies (3 splits x 3 seeds, the report in OUT/report.html,
the improved model in OUT/model); frozen features are computed once, so only the projection
heads are retrained per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from claptune.cli._common import (
    add_config_flags,
    add_device,
    add_overwrite,
    add_quiet,
    config_from_args,
    holds_out_folder,
    improve_and_print,
    sub_parser,
)
from claptune.improve.config import ImproveConfig


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "demo", __doc__)
    p.add_argument(
        "--root",
        help="local ESC-50 copy (default: found in $CLAPTUNE_DATA/esc50 or $CLAPTUNE_DATA, "
        "as for every command, else downloaded there)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    add_config_flags(p, ["n_splits", "n_seeds", "corpus", "cache_dir"])
    add_device(p, "training", from_config=True)
    add_quiet(p)
    add_overwrite(p)
    return p


def demo_config(args: argparse.Namespace) -> ImproveConfig:
    """improve's config for the demo: the default model on ESC-50 from --root, else where
    every command looks for it ($CLAPTUNE_DATA/esc50 or $CLAPTUNE_DATA), else a download."""
    root = args.root or None
    return config_from_args(args, model="default", target="esc50", root=root, download=root is None)


@holds_out_folder
def run(args: argparse.Namespace) -> int:
    config = demo_config(args)
    where = config.root or "$CLAPTUNE_DATA (else a download)"
    print(f"claptune demo: default model on ESC-50 from {where}; report in {args.out}")
    return improve_and_print(config, args.out, args.quiet)
