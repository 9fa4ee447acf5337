"""The default configuration on skewed targets, many class orders per ratio, two-stage CIs.

    python bench/bench_skewed_default.py --root ../shared/data/esc50-subset \
        --ratios 1 4 10 40 --orders 4000 4001 4002 4003 4004 4005 4006 4007 4008 4009

Each (ratio, order) is a long-tailed variant of the subset (``make_skewed.py``: class sizes
falling geometrically from the head class to ``1 / ratio`` of it, in the class order drawn with
``order``; ratio 1 is a random class order of the balanced subset). On each, ``improve``'s
default (refined pseudo-labels, hard loss) is trained on 3 grouped splits x 3 seeds with
``--test-fraction 0.25``, beside the teacher (``claptune ablate`` with those two rows). Per
target: pool and test sizes, clip and class-mean gain with two-stage 95 % CIs (splits
resampled, then clips), and the training-free teacher + transduction on the same test parts.
Per ratio: the mean gains, how many targets lose beyond their CI, and the rank correlation of
gain with pool size. The orders are drawn after the default was fixed; nothing here chooses.

Resumable: a variant whose ablation.json is in ``--work`` is read, not trained again.
Results: bench/results/skewed_default.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from make_skewed import make_variants

RESULTS = Path(__file__).resolve().parent / "results"


def grid():
    from claptune.improve.ablation import AblationEntry

    return [AblationEntry((), None), AblationEntry(("pseudo_refined",), "hard", label="default")]


def _ci(d: dict | None) -> str:
    if not d:
        return ""
    return f"{100 * d['difference']:+.1f} [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}]"


def _row(result: dict) -> dict:
    return next(r for r in result["rows"] if r["loss"] is not None)


def _sizes(split: dict) -> tuple[int, int]:
    """(pool, test) clips of a split, from ablation.json's or the compact record's."""
    if "n_adapt" in split:
        return split["n_adapt"], split["n_test"]
    return len(split["adapt"]), len(split["test"])


def compact(result: dict) -> dict:
    """An ablation.json without what the tables do not read: the splits' clip lists become their
    sizes, the config (the same for every target) is kept once at the top."""
    out = {k: v for k, v in result.items() if k != "config"}
    out["splits"] = [
        {
            "index": s["index"],
            "seed": s["seed"],
            "strategy": s.get("strategy"),
            "n_adapt": _sizes(s)[0],
            "n_test": _sizes(s)[1],
        }
        for s in result["splits"]
    ]
    return out


def summarize(variants: list[dict], results: dict[str, dict]) -> str:
    from scipy.stats import spearmanr

    lines = [
        "| target | clips | pool / test | before | after | clip gain [two-stage 95 % CI] "
        "| class mean before -> after | class-mean gain [two-stage 95 % CI] "
        "| teacher + transduction gain |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    by_ratio: dict[float, list[tuple[dict, dict]]] = {}
    for v in variants:
        res = results.get(v["name"])
        if not res or not any(r["loss"] is not None for r in res["rows"]):
            continue
        row = _row(res)
        by_ratio.setdefault(v["ratio"], []).append((v, res))
        pool, test = _sizes(res["splits"][0])
        trans = (row.get("pipelines") or {}).get("teacher + claptune") or {}
        lines.append(
            f"| {v['name']} | {v['n_clips']} | {pool} / {test} "
            f"| {100 * row['before']['mean']:.1f} | {100 * row['after']['mean']:.1f} "
            f"| {_ci(row.get('two_stage'))} "
            f"| {100 * row['class_mean_before']['mean']:.1f} -> "
            f"{100 * row['class_mean_after']['mean']:.1f} "
            f"| {_ci(row.get('class_mean_two_stage'))} | {_ci(trans.get('gain'))} |"
        )
    lines += [
        "",
        "Per ratio (mean over targets; 'below' counts targets whose two-stage CI lies wholly "
        "below 0; rho = Spearman rank correlation of the clip gain with the pool size, where the "
        "grouped splits leave pools of different sizes):",
        "",
        "| ratio | targets | pool clips | clip gain | below (clip) | class-mean gain "
        "| below (class mean) | teacher + transduction gain | rho(gain, pool) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    every = []
    for ratio, items in sorted(by_ratio.items()):
        rows = [_row(r) for _, r in items]
        pools = [_sizes(r["splits"][0])[0] for _, r in items]
        gains = [x["two_stage"]["difference"] for x in rows]
        cm = [x["class_mean_two_stage"]["difference"] for x in rows]
        below = sum(x["two_stage"]["ci_high"] < 0 for x in rows)
        below_cm = sum(x["class_mean_two_stage"]["ci_high"] < 0 for x in rows)
        trans = [
            (x.get("pipelines") or {})
            .get("teacher + claptune", {})
            .get("gain", {})
            .get("difference")
            for x in rows
        ]
        trans = [t for t in trans if t is not None]
        rho = spearmanr(pools, gains).statistic if len(set(pools)) > 1 else None
        every += list(zip(pools, gains, strict=True))
        lines.append(
            f"| {ratio:g} | {len(rows)} | {np.mean(pools):.0f} | {100 * np.mean(gains):+.1f} "
            f"| {below} | {100 * np.mean(cm):+.1f} | {below_cm} "
            f"| {100 * np.mean(trans) if trans else float('nan'):+.1f} "
            f"| {'' if rho is None else f'{rho:+.2f}'} |"
        )
    if len(every) > 2:
        p, g = zip(*every, strict=True)
        lines += [
            "",
            f"Over all {len(every)} targets: rank correlation of clip gain with pool size "
            f"{spearmanr(p, g).statistic:+.2f}.",
        ]
    lines += guard_lines(by_ratio)
    return "\n".join(lines) + "\n"


def guard_lines(by_ratio: dict) -> list[str]:
    """The label-free guard on every run (its clips: each test part's audio, labels unread):
    how often it kept the student, and against the test labels (scored only) how often that
    was right, how many kept students lost to teacher + transduction and how many rejected
    ones beat it."""
    lines = [
        "",
        "The label-free guard over the same runs (student + transduction against teacher + "
        "transduction on each test part; 'right' scored with the labels afterwards):",
        "",
        "| ratio | runs | kept the student | right | kept a worse student "
        "| rejected a better one |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for ratio, items in sorted(by_ratio.items()):
        guards = [_row(r).get("guard") or {} for _, r in items]
        guards = [g for g in guards if g.get("runs")]
        if not guards:
            continue
        runs = sum(g["runs"] for g in guards)
        kept = sum(g["kept_student"] * g["runs"] for g in guards)
        right = sum(g["right"] * g["runs"] for g in guards)
        worse = sum(g["kept_a_worse_student"] for g in guards)
        better = sum(g["rejected_a_better_student"] for g in guards)
        lines.append(
            f"| {ratio:g} | {runs:.0f} | {100 * kept / runs:.0f} % | {100 * right / runs:.0f} % "
            f"| {worse:.0f} | {better:.0f} |"
        )
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout to draw the variants from")
    ap.add_argument("--data", type=Path, default=Path("runs/skewed-default-data"))
    ap.add_argument("--work", type=Path, default=Path("runs/skewed-default"))
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 4, 10, 40])
    ap.add_argument("--orders", type=int, nargs="+", default=list(range(4000, 4010)))
    ap.add_argument("--model", default="default")
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="how the runs were made, written above the tables")
    args = ap.parse_args(argv)
    from claptune.improve.ablation import run_ablation
    from claptune.improve.config import ImproveConfig

    t0 = time.time()
    variants = make_variants(Path(args.root), args.data, args.ratios, args.orders, controls=False)
    # order by order, then ratio: a run cut short still covers every ratio
    variants.sort(key=lambda v: (args.orders.index(v["order"]), v["ratio"]))
    results: dict[str, dict] = {}
    for v in variants:
        done = args.work / v["name"] / "ablation.json"
        earlier = json.loads(done.read_text()) if done.is_file() else {}
        if len(earlier.get("rows", [])) == len(grid()):  # finished (an interrupted one is not)
            results[v["name"]] = earlier
        else:
            config = ImproveConfig(
                model=args.model,
                target="esc50",
                root=str(v["path"]),
                test_fraction=args.test_fraction,
            )
            print(f"[bench_skewed_default] {v['name']}: {v['n_clips']} clips", flush=True)
            ablation = run_ablation(config, args.work / v["name"], grid(), progress=False)
            results[v["name"]] = ablation.to_dict()
        out = {
            "command": "python bench/bench_skewed_default.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "note": args.note,
            "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "seconds": time.time() - t0,
            "variants": variants,
            "config": next(iter(results.values())).get("config"),
            "results": {name: compact(r) for name, r in results.items()},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "skewed_default.json").write_text(json.dumps(out, indent=1, default=str))
        head = f"{args.note}\n\n" if args.note else ""
        (args.out / "skewed_default.md").write_text(head + summarize(variants, results))
    print(summarize(variants, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
