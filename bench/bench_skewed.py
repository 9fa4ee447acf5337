"""The skewed-target benchmark: does ``improve`` hold when the target's classes are skewed and
the split does not hand the unlabeled pool the true class shares?

    python bench/bench_skewed.py --root ../shared/data/esc50-subset --orders 0 1 2

Writes the long-tailed variants (``make_skewed.py``: imbalance ratios 1, 10, 40 and a balanced
control of the same size for each skewed one) under ``--data``, then runs ``claptune ablate`` on
each with the same grid: the teacher, ``pseudo_refined`` balanced to a uniform prior (the
default), balanced to the EM estimate of the pool's class shares, and not balanced (``knn``),
all with the hard loss; splits are the default (grouped by source recording), ``--test-fraction``
0.25 so that the pools of the small variants keep most clips. Per variant and row: clip and
class-mean accuracy before/after with their clip-bootstrap 95 % CIs, the prior's total
variation distance to the pool's true shares, the label-free selection signal, and which row it
would pick next to the row labels would pick. Results: bench/results/skewed.json and .md (one
``ablate`` folder per variant under ``--work``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _results import write_results
from make_skewed import make_variants

RESULTS = Path(__file__).resolve().parent / "results"


def grid():
    from claptune.improve.ablation import AblationEntry

    return [
        AblationEntry((), None),
        AblationEntry(("pseudo_refined",), "hard", label="uniform prior (default)"),
        AblationEntry(
            ("pseudo_refined",),
            "hard",
            curation=(("pseudo_refined_prior", "em"),),
            label="EM prior",
        ),
        AblationEntry(
            ("pseudo_refined",),
            "hard",
            curation=(("pseudo_refined_mode", "knn"),),
            label="no balancing (knn)",
        ),
    ]


def summarize(variants: list[dict], results: dict[str, dict]) -> str:
    lines = [
        "| variant | clips | pool / test | row | clip acc. | gain [95 % CI] | class-mean acc. "
        "| class-mean gain [95 % CI] | prior TV | label-free signal |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in variants:
        res = results.get(v["name"])
        if not res:
            continue
        split = res["splits"][0]
        sizes = f"{len(split['adapt'])} / {len(split['test'])}"
        for row in res["rows"]:
            if row["loss"] is None:
                continue
            g, cg = row["gain"], row.get("class_mean_gain") or {}
            bs, cbs = row["bootstrap"], row.get("class_mean_bootstrap") or {}
            tv = row.get("prior_tv")
            sig = row.get("label_free")
            lines.append(
                f"| {v['name']} | {v['n_clips']} | {sizes} | {row['name']} "
                f"| {100 * row['before']['mean']:.1f} -> {100 * row['after']['mean']:.1f} "
                f"| {100 * g['mean']:+.1f} [{100 * bs['ci_low']:+.1f}, {100 * bs['ci_high']:+.1f}] "
                f"| {100 * row['class_mean_before']['mean']:.1f} -> "
                f"{100 * row['class_mean_after']['mean']:.1f} "
                f"| {100 * cg.get('mean', float('nan')):+.1f} "
                f"[{100 * cbs.get('ci_low', float('nan')):+.1f}, "
                f"{100 * cbs.get('ci_high', float('nan')):+.1f}] "
                f"| {'' if tv is None else f'{tv:.3f}'} | {'' if sig is None else f'{sig:.3f}'} |"
            )
    return "\n".join(lines) + "\n" + aggregate(variants, results)


def aggregate(variants: list[dict], results: dict[str, dict]) -> str:
    """Per imbalance ratio (skewed variants and their balanced controls apart): the mean over
    variants of each row's gains, and how often the label-free pick matched the pick by
    labels."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for v in variants:
        if v["name"] not in results:
            continue
        ratio = float(v["name"].split("-")[0][1:])
        kind = "balanced" if ratio == 1 else v["kind"]
        groups.setdefault((kind, ratio), []).append(results[v["name"]])
    lines = [
        "",
        "Mean over the variants of each group (each variant: 3 splits x 3 seeds):",
        "",
        "| group | variants | pool clips | row | clip gain | class-mean gain | prior TV "
        "| label-free pick = label pick |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for (kind, ratio), res in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        res = [r for r in res if len(r["rows"]) == len(res[0]["rows"])]
        pool = np.mean([len(r["splits"][0]["adapt"]) for r in res])
        agree = sum(
            r.get("picks", {}).get("label_free") == r.get("picks", {}).get("labels") for r in res
        )
        names = [row["name"] for row in res[0]["rows"] if row["loss"] is not None]
        for name in names:
            rows = [next(x for x in r["rows"] if x["name"] == name) for r in res]
            tv = [x["prior_tv"] for x in rows if x.get("prior_tv") is not None]
            lines.append(
                f"| {kind} r{ratio:g} | {len(res)} | {pool:.0f} | {name} "
                f"| {100 * np.mean([x['gain']['mean'] for x in rows]):+.1f} "
                f"| {100 * np.mean([x['class_mean_gain']['mean'] for x in rows]):+.1f} "
                f"| {'' if not tv else f'{np.mean(tv):.3f}'} | {agree}/{len(res)} |"
            )
    return "\n".join(lines) + "\n"


def summarize_only(args, argv=None) -> int:
    # each variant once (a later --data folder may list the same variant again)
    by_name = {
        v["name"]: v for d in args.data for v in json.loads((d / "variants.json").read_text())
    }
    variants = list(by_name.values())
    results = {}
    for v in variants:
        path = args.work / v["name"] / "ablation.json"
        if path.is_file():
            results[v["name"]] = json.loads(path.read_text())
    variants = [v for v in variants if v["name"] in results]

    # by imbalance ratio, each skewed variant followed by its balanced control
    def rank(v):
        ratio = float(v["name"].split("-")[0][1:])
        return (ratio, v["order"], v["kind"] == "control")

    variants.sort(key=rank)
    data = {"note": args.note, "variants": variants, "results": results}
    head = f"{args.note}\n\n" if args.note else ""
    md = head + summarize(variants, results)
    write_results(args.out, "skewed", data, md, script="bench_skewed.py", argv=argv, indent=2)
    print(summarize(variants, results))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout to draw the variants from")
    ap.add_argument(
        "--data",
        type=Path,
        nargs="+",
        default=[Path("runs/skewed-data")],
        help="where the variants are written (several with --summarize)",
    )
    ap.add_argument("--work", type=Path, default=Path("runs/skewed"))
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 10, 40])
    ap.add_argument("--orders", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--model", default="default")
    ap.add_argument("--splits", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="how the runs were made, written above the tables")
    ap.add_argument(
        "--summarize",
        action="store_true",
        help="train nothing: rebuild skewed.json/.md from the ablations already in "
        "--work for the variants of every --data folder (e.g. runs split "
        "over several processes)",
    )
    args = ap.parse_args(argv)
    if args.summarize:
        return summarize_only(args, argv)
    from claptune.improve.ablation import run_ablation
    from claptune.improve.config import ImproveConfig

    t0 = time.time()
    variants = make_variants(Path(args.root), args.data[0], args.ratios, args.orders)
    results: dict[str, dict] = {}
    for v in variants:
        config = ImproveConfig(
            model=args.model,
            target="esc50",
            root=str(v["path"]),
            n_splits=args.splits,
            n_seeds=args.seeds,
            test_fraction=args.test_fraction,
        )
        print(f"[bench_skewed] {v['name']}: {v['n_clips']} clips", flush=True)
        results[v["name"]] = run_ablation(
            config, args.work / v["name"], grid(), progress=False
        ).to_dict()
        data = {"variants": variants, "results": results}
        md = summarize(variants, results)
        write_results(
            args.out, "skewed", data, md, script="bench_skewed.py", argv=argv, t0=t0, indent=2
        )
    print(summarize(variants, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
