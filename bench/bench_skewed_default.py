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
import time
from pathlib import Path

import numpy as np

from _results import write_results
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


def _group(variant: dict) -> str:
    """The row of the per-ratio table a variant belongs to: its ratio, or the balanced control
    of a ratio's variants (same clip count, ``make_skewed.py --controls``)."""
    if variant.get("kind") == "control":
        return f"control of {_ratio_of(variant['control_of']):g}"
    return f"{variant['ratio']:g}"


def _ratio_of(name: str) -> float:
    return float(name[1:].split("-o")[0])


def _group_order(group: str) -> tuple[float, int]:
    control = group.startswith("control of ")
    return (float(group.removeprefix("control of ")), int(control))


def summarize(variants: list[dict], results: dict[str, dict]) -> str:
    from scipy.stats import spearmanr

    lines = [
        "| target | clips | pool / test | before | after | clip gain [two-stage 95 % CI] "
        "| class mean before -> after | class-mean gain [two-stage 95 % CI] "
        "| teacher + transduction gain |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    by_ratio: dict[str, list[tuple[dict, dict]]] = {}
    for v in variants:
        res = results.get(v["name"])
        if not res or not any(r["loss"] is not None for r in res["rows"]):
            continue
        row = _row(res)
        by_ratio.setdefault(_group(v), []).append((v, res))
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
    for ratio, items in sorted(by_ratio.items(), key=lambda kv: _group_order(kv[0])):
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
        # a rank correlation over pools a few clips apart (grouped splits) says nothing
        rho = spearmanr(pools, gains).statistic if max(pools) - min(pools) >= 10 else None
        every += list(zip(pools, gains, strict=True))
        lines.append(
            f"| {ratio} | {len(rows)} | {np.mean(pools):.0f} | {100 * np.mean(gains):+.1f} "
            f"| {below} | {100 * np.mean(cm):+.1f} | {below_cm} "
            f"| {100 * np.mean(trans) if trans else float('nan'):+.1f} "
            f"| {'' if rho is None else f'{rho:+.2f}'} |"
        )
    if len(every) > 2 and max(e[0] for e in every) - min(e[0] for e in every) >= 10:
        p, g = zip(*every, strict=True)
        lines += [
            "",
            f"Over all {len(every)} targets: rank correlation of clip gain with pool size "
            f"{spearmanr(p, g).statistic:+.2f}.",
        ]
    lines += control_lines(variants, results)
    lines += guard_lines(by_ratio)
    return "\n".join(lines) + "\n"


def control_lines(variants: list[dict], results: dict[str, dict]) -> list[str]:
    """Each skewed variant beside its balanced control of the same size (where both ran), and
    how many meet the skewed-target goal: clip gain >= +3 points, class-mean gain >= 0, and clip
    gain >= the control's - 1 (point estimates, two-stage)."""
    pairs = []
    for v in variants:
        if v.get("kind") != "control":
            continue
        skewed, control = results.get(v["control_of"]), results.get(v["name"])
        if (
            skewed
            and control
            and all(any(r["loss"] is not None for r in x["rows"]) for x in (skewed, control))
        ):
            pairs.append((v["control_of"], _row(skewed), _row(control)))
    if not pairs:
        return []
    lines = [
        "",
        "Each skewed target beside its balanced control of the same size (clip gain, two-stage; "
        "goal: clip gain >= +3, class-mean gain >= 0, clip gain >= the control's - 1):",
        "",
        "| target | skewed clip gain | class-mean gain | control clip gain | skewed - control "
        "| goal |",
        "|---|---|---|---|---:|---|",
    ]
    met = []
    for name, s, c in pairs:
        g, cm = s["two_stage"]["difference"], s["class_mean_two_stage"]["difference"]
        cg = c["two_stage"]["difference"]
        ok = g >= 0.03 and cm >= 0 and g >= cg - 0.01
        met.append(ok)
        lines.append(
            f"| {name} | {_ci(s['two_stage'])} | {_ci(s['class_mean_two_stage'])} "
            f"| {_ci(c['two_stage'])} | {100 * (g - cg):+.1f} | {'met' if ok else 'not met'} |"
        )
    gs = [s["two_stage"]["difference"] for _, s, _ in pairs]
    cms = [s["class_mean_two_stage"]["difference"] for _, s, _ in pairs]
    cgs = [c["two_stage"]["difference"] for _, _, c in pairs]
    lines += [
        f"| mean of {len(pairs)} | {100 * np.mean(gs):+.1f} | {100 * np.mean(cms):+.1f} "
        f"| {100 * np.mean(cgs):+.1f} | {100 * (np.mean(gs) - np.mean(cgs)):+.1f} "
        f"| {sum(met)} of {len(met)} targets |",
    ]
    return lines


def _mean_gain(items: list, pipeline: str) -> str:
    """Mean two-stage gain of ``pipeline`` over the targets in ``items`` ('' if none has it)."""
    found = [((_row(r).get("pipelines") or {}).get(pipeline) or {}).get("gain") for _, r in items]
    found = [g["difference"] for g in found if g]
    return f"{100 * np.mean(found):+.1f}" if found else ""


def guard_lines(by_ratio: dict) -> list[str]:
    """The label-free guard on every run (its clips: each test part's audio, labels unread):
    how often it kept the student, and against the test labels (scored only) how often that
    was right, how many kept students lost to teacher + transduction and how many rejected
    ones beat it; and what each pipeline gains over the teacher's plain zero-shot (mean over
    targets): the student, the student + transduction, teacher + transduction, and what the
    guard hands a user (``guarded``)."""
    lines = [
        "",
        "The label-free guard over the same runs (student + transduction against teacher + "
        "transduction on each test part; 'right' scored with the labels afterwards), and the "
        "gain of each pipeline over the teacher's plain zero-shot (points, mean over targets):",
        "",
        "| ratio | runs | kept the student | right | right if it never kept one "
        "| kept a worse student | rejected a better one | student | student + transduction "
        "| teacher + transduction | guarded |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for ratio, items in sorted(by_ratio.items(), key=lambda kv: _group_order(kv[0])):
        guards = [_row(r).get("guard") or {} for _, r in items]
        guards = [g for g in guards if g.get("runs")]
        if not guards:
            continue
        runs = sum(g["runs"] for g in guards)
        kept = sum(g["kept_student"] * g["runs"] for g in guards)
        right = sum(g["right"] * g["runs"] for g in guards)
        worse = sum(g["kept_a_worse_student"] for g in guards)
        better = sum(g["rejected_a_better_student"] for g in guards)
        # runs where the student + transduction was better: kept and not worse, or rejected
        # and better ('worse' counts ties, as 'right' does)
        student_better = kept - worse + better
        gains = [
            _mean_gain(items, name)
            for name in ("student", "student + transduction", "teacher + claptune", "guarded")
        ]
        lines.append(
            f"| {ratio} | {runs:.0f} | {100 * kept / runs:.0f} % | {100 * right / runs:.0f} % "
            f"| {100 * (1 - student_better / runs):.0f} % "
            f"| {worse:.0f} | {better:.0f} | " + " | ".join(gains) + " |"
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
    ap.add_argument(
        "--controls",
        action="store_true",
        help="also run each skewed variant's class-balanced control of the same size",
    )
    ap.add_argument("--name", default="skewed_default", help="stem of the results files")
    ap.add_argument("--note", default="", help="how the runs were made, written above the tables")
    args = ap.parse_args(argv)
    from claptune.improve.ablation import run_ablation
    from claptune.improve.config import ImproveConfig

    t0 = time.time()
    variants = make_variants(
        Path(args.root), args.data, args.ratios, args.orders, controls=args.controls
    )
    # order by order, then ratio: a run cut short still covers every ratio
    variants.sort(key=lambda v: (args.orders.index(v["order"]), _ratio_of(v["name"]), v["name"]))
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
        data = {
            "note": args.note,
            "variants": variants,
            "config": next(iter(results.values())).get("config"),
            "results": {name: compact(r) for name, r in results.items()},
        }
        head = f"{args.note}\n\n" if args.note else ""
        md = head + summarize(variants, results)
        write_results(
            args.out, args.name, data, md, script="bench_skewed_default.py", argv=argv, t0=t0
        )
    print(summarize(variants, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
