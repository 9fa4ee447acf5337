"""Training and curation levers of improve's default on 8:1 targets of our own, same splits.

    python bench/bench_levers.py --root ../shared/data/esc50-subset --work runs/levers \
        --orders 8100 8101 8102 8103 8104 8105 8106 8107

Each lever is the default row of ``claptune ablate`` (refined pseudo-labels, hard loss) with one
override of ``TrainConfig`` or ``CurationSettings``, on the same 8:1 variants (``make_skewed``,
ratio 8: class sizes 8 down to 1, 168 clips), 3 grouped splits x 1 seed, ``--test-fraction
0.25``. One seed per split: the splits' spread is the larger one (docs/improve.md). Class
orders 8100-8107 are development orders of our own. Reports each lever's mean two-stage clip and class-mean gain and
its difference from the default on the same splits. Resumable: a lever whose ablation.json is
in ``--work`` is read, not trained again. Results: bench/results/levers.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from _results import write_results
from make_skewed import make_variants

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (TrainConfig overrides, CurationSettings overrides); "default" has none. "loss" and
# "methods" among the first are the ablation entry's (default: hard, pseudo_refined)
LEVERS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    "epochs 5": ({"epochs": 5}, {}),
    "epochs 20": ({"epochs": 20}, {}),
    "lr 3e-4": ({"lr": 3e-4}, {}),
    "p_curated 0.75": ({"p_curated": 0.75}, {}),
    "keep 70 % of the pseudo-labels (q0.3)": ({}, {"pseudo_refined_threshold": "q0.3"}),
    "keep 25 % of the pseudo-labels (q0.75)": ({}, {"pseudo_refined_threshold": "q0.75"}),
    "soft loss (beta 0.3)": ({"loss": "soft"}, {}),
    "cross-fitted transductive labels": ({}, {"pseudo_refined_mode": "crossfit_lp_balance"}),
    "ds + pseudo_refined, soft loss": ({"loss": "soft", "methods": ("ds", "pseudo_refined")}, {}),
    "weight-space ensemble (wise_alpha 0.8)": ({"wise_alpha": 0.8}, {}),
    "batch size 32": ({"batch_size": 32}, {}),
    "lowest held-out loss (keep best_val)": ({"keep": "best_val"}, {}),
    "keep best_val and wise_alpha 0.8": ({"keep": "best_val", "wise_alpha": 0.8}, {}),
}


def run_lever(name: str, variant: dict, work: Path, n_seeds: int = 1) -> dict:
    from claptune.improve.ablation import AblationEntry, run_ablation
    from claptune.improve.config import ImproveConfig

    out = work / name.replace(" ", "_").replace("%", "pc").replace("(", "").replace(")", "")
    out = out / variant["name"]
    done = out / "ablation.json"
    if done.is_file():
        result = json.loads(done.read_text())
        if len(result.get("rows", [])) == 2:
            return result
    train, curation = LEVERS[name]
    train = dict(train)
    # the ablation entry's loss and methods, not TrainConfig fields
    loss, methods = train.pop("loss", "hard"), train.pop("methods", ("pseudo_refined",))
    config = ImproveConfig(
        model="default",
        target="esc50",
        root=str(variant["path"]),
        test_fraction=0.25,
        n_seeds=n_seeds,
    )
    config.train = dataclasses.replace(config.train, **train)
    config.curation = dataclasses.replace(config.curation, **curation)
    grid = [AblationEntry((), None), AblationEntry(methods, loss, label=name)]
    return run_ablation(config, out, grid, progress=False).to_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout to draw the variants from")
    ap.add_argument("--data", type=Path, default=Path("runs/levers-data"))
    ap.add_argument("--work", type=Path, default=Path("runs/levers"))
    ap.add_argument("--orders", type=int, nargs="+", default=list(range(8100, 8108)))
    ap.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per split (1)")
    ap.add_argument("--name", default="levers", help="results name (bench/results/NAME.md)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    variants = make_variants(Path(args.root), args.data, [8], args.orders, controls=False)
    gains: dict[str, dict[str, tuple[float, float]]] = {}
    for name in ["default", *[lever for lever in args.levers if lever != "default"]]:
        for v in variants:
            print(f"[bench_levers] {name}: {v['name']}", flush=True)
            row = run_lever(name, v, args.work, args.seeds)["rows"][1]
            gains.setdefault(name, {})[v["name"]] = (
                row["two_stage"]["difference"],
                row["class_mean_two_stage"]["difference"],
            )
    base = gains["default"]
    lines = [
        "| lever | targets | clip gain | class-mean gain | minus the default (clip) "
        "| targets above the default |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, per in gains.items():
        names = sorted(per)
        clip = np.array([per[n][0] for n in names])
        cm = np.array([per[n][1] for n in names])
        diff = clip - np.array([base[n][0] for n in names])
        lines.append(
            f"| {name} | {len(names)} | {100 * clip.mean():+.1f} | {100 * cm.mean():+.1f} "
            f"| {100 * diff.mean():+.1f} | {int((diff > 0).sum())} |"
        )
    md = "\n".join(lines) + "\n"
    write_results(
        args.out, args.name, {"gains": gains}, md, script="bench_levers.py", argv=argv, t0=t0
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
