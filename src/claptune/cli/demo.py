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
    CACHE_DIR_HELP,
    CORPUS_HELP,
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
    p.add_argument("--splits", type=int, help="adaptation/test splits (default: 3)")
    p.add_argument("--seeds", type=int, help="training seeds per split (default: 3)")
    p.add_argument("--corpus", help=CORPUS_HELP)
    p.add_argument(
        "--device",
        help="torch device of training: auto (cuda if available, else cpu), cpu, "
        "cuda, cuda:1, ... (default: auto)",
    )
    p.add_argument("--cache-dir", help=CACHE_DIR_HELP)
    add_quiet(p)
    add_overwrite(p)
    return p


def demo_config(args: argparse.Namespace) -> ImproveConfig:
    """improve's config for the demo: the default model on ESC-50 from --root, else where
    every command looks for it ($CLAPTUNE_DATA/esc50 or $CLAPTUNE_DATA), else a download."""
    root = args.root or None
    full = argparse.Namespace(
        model="default",
        target="esc50",
        root=root,
        download=root is None,
        out=args.out,
        splits=args.splits,
        seeds=args.seeds,
        test_fraction=None,
        seed=None,
        corpus=args.corpus,
        corpus_holdout=None,
        templates=None,
        on_error=None,
        threshold=[],
        curation=[],
        train=[],
        config=None,
        cache_dir=getattr(args, "cache_dir", None),
        device=getattr(args, "device", None),
    )
    return config_from_args(full)


@holds_out_folder
def run(args: argparse.Namespace) -> int:
    config = demo_config(args)
    where = config.root or "$CLAPTUNE_DATA (else a download)"
    print(f"claptune demo: default model on ESC-50 from {where}; report in {args.out}")
    return improve_and_print(config, args.out, args.quiet)
