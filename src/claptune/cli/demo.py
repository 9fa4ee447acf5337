"""``claptune demo``: ``improve`` with the embedded default model on ESC-50.

    claptune demo                       # uses $CLAPTUNE_DATA if set, else downloads ESC-50
    claptune demo --root ../shared/data/esc50-subset --out runs/demo

Everything of ``claptune improve`` applies (3 splits x 3 seeds, the report in OUT/report.html,
the improved model in OUT/model); frozen features are computed once, so only the projection
heads are retrained per run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from claptune.cli._common import config_from_args, improve_and_print
from claptune.improve.config import ImproveConfig


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="improve the default model on ESC-50, end to end",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="local ESC-50 copy (default: $CLAPTUNE_DATA, else download)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (runs/demo)")
    p.add_argument("--splits", type=int, help="adaptation/test splits (3)")
    p.add_argument("--seeds", type=int, help="training seeds per split (3)")
    p.add_argument("--corpus", help="paired corpus (default: $CLAPTUNE_CORPUS or ../shared/data/captioned-sfx)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def demo_config(args: argparse.Namespace) -> ImproveConfig:
    """improve's config for the demo: the default model on ESC-50 from --root,
    $CLAPTUNE_DATA, or a download."""
    root = args.root or os.environ.get("CLAPTUNE_DATA") or None
    full = argparse.Namespace(
        model="default", target="esc50", root=root, download=root is None, out=args.out,
        splits=args.splits, seeds=args.seeds, test_fraction=None, seed=None, corpus=args.corpus,
        corpus_holdout=None, templates=None, on_error=None, threshold=[], curation=[], train=[],
        config=None, cache_dir=None,
    )
    return config_from_args(full)


def run(args: argparse.Namespace) -> int:
    config = demo_config(args)
    where = config.root or "a download of ESC-50 (no --root and no $CLAPTUNE_DATA)"
    print(f"claptune demo: default model on ESC-50 from {where}; report in {args.out}")
    return improve_and_print(config, args.out, args.quiet)
