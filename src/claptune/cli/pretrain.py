"""`claptune pretrain`: train the default model's projection heads on a captioned corpus.

    claptune pretrain --corpus ../shared/data/captioned-sfx --out runs/default-seed0
    claptune pretrain --corpus CORPUS --out DIR --recipe my.json --seed 1 --epochs 5

The recipe (default: claptune/recipes/default.json, the one the shipped heads came from) fixes
the heads, the caption rewrites, the held-out split and the optimisation; --seed, --epochs and
--max-clips override it. DIR then loads with ``claptune.load_model(DIR)``; it also holds the
held-out retrieval scores and the per-epoch history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from claptune.cli._common import add_cache_dir, add_quiet, cache_dir, sub_parser


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub_parser(sub, "pretrain", __doc__)
    p.add_argument(
        "--corpus",
        required=True,
        type=Path,
        help="paired captioned corpus the heads train on: a folder with manifest.csv (path, "
        "caption columns), the CSV itself, or a Hugging Face dataset as for improve (required)",
    )
    p.add_argument("--out", required=True, type=Path, help="output model folder")
    p.add_argument(
        "--recipe", default="default.json", help="recipe JSON file, or a name in claptune/recipes"
    )
    p.add_argument(
        "--seed", type=int, default=None, help="override the recipe's seed (default: the recipe's)"
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override the recipe's epochs (default: the recipe's)",
    )
    p.add_argument(
        "--max-clips",
        type=int,
        default=None,
        help="use only the first N clips of the manifest, for smoke runs (default: all)",
    )
    add_cache_dir(p)
    add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from claptune.train.heads import PretrainConfig, pretrain

    config = PretrainConfig.from_recipe(
        args.recipe, seed=args.seed, epochs=args.epochs, max_clips=args.max_clips
    )
    result = pretrain(
        args.corpus, args.out, config, cache_dir=cache_dir(args), progress=not args.quiet
    )
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in result.heldout.items())
    print(f"model saved to {result.out_dir} (epoch {result.best_epoch}; held-out {metrics})")
    return 0
