"""``claptune ablate``: baseline, DU, DS, ADS, a2a, pseudo and pseudo_refined, and DS together
with pseudo_refined, each with the hard and the soft loss, on the same splits and seeds (3 x 3
by default), as a Markdown table and a plot. ``--methods`` takes methods and "+"-joined
combinations, e.g. ``ds,pseudo,ds+pseudo``.

    claptune ablate --model default --target esc50 --root ../shared/data/esc50-subset --out runs/ablation

OUT gets ablation.md (the table), ablation.json (every figure, with spreads and paired
tests; the clips and class names in the order of the indices), ablation.png and scores.npz
(every student's class scores on every clip, and the clips' classes, for analyses of your own
such as bench/bench_selection.py), rewritten after each configuration. A second
table puts the label-free peers side by side on the same test parts: the teacher's zero-shot
ensemble alone and with each transduction (entropy prompt weighting, Sinkhorn, label
propagation, TransCLIP's Gaussian EM, claptune's chain), and each trained row's student plain,
with transduction, and as the guard would hand it over. A configuration named twice runs once.
"""

from __future__ import annotations

import argparse

from claptune.cli._common import (
    add_common_arguments,
    add_config_flags,
    config_from_args,
    sub_parser,
)
from claptune.errors import ClaptuneError
from claptune.improve.config import CURATION_METHODS, LOSSES


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub_parser(sub, "ablate", __doc__)
    add_common_arguments(p)
    add_config_flags(p, ["transduction", "class_head"])
    # DS first: the paper's claim is the row a cut-short ablation must not miss
    order = ("ds", "pseudo_refined", "pseudo", "ds+pseudo_refined", "ads", "a2a", "du")
    p.add_argument(
        "--methods",
        default=",".join(order),
        help="methods (or +-joined combinations) to compare, in this order",
    )
    p.add_argument("--losses", default=",".join(LOSSES), help="losses to compare")
    p.add_argument(
        "--no-replay-only",
        action="store_true",
        help="leave out the replay-only fine-tuning control rows",
    )
    return p


def _names(value: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise ClaptuneError(f"unknown {what} {bad or value!r}; choose from {', '.join(allowed)}")
    return names


def run(args: argparse.Namespace) -> int:
    """Check the grid and the configuration, then hold ``--out`` and run the ablation."""
    from claptune.improve import ablation_grid, run_ablation
    from claptune.runfolder import hold_run_folder

    entries = tuple(
        dict.fromkeys(  # a configuration named twice runs once
            _names(e.replace("+", ","), CURATION_METHODS, "curation method(s)")
            for e in args.methods.split(",")
            if e.strip()
        )
    )
    if not entries:
        raise ClaptuneError(f"--methods {args.methods!r} names no curation method")
    methods = tuple(dict.fromkeys(m for e in entries for m in e))
    losses = tuple(dict.fromkeys(_names(args.losses, LOSSES, "loss(es)")))
    # the workspace validates against the union of methods; save_model is irrelevant here
    config = config_from_args(args, methods=methods, save_model=False)
    grid = ablation_grid(entries, losses, replay_only=not args.no_replay_only)
    with hold_run_folder(args.out, args.command, overwrite=args.overwrite):
        result = run_ablation(config, args.out, grid, progress=not args.quiet)
    from claptune.improve.ablation import ablation_markdown

    print(ablation_markdown(result))
    print(f"written: {args.out / 'ablation.md'}, ablation.json, ablation.png, scores.npz")
    return 0
