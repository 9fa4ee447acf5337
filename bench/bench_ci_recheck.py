"""The skewed benchmarks' intervals recomputed with the two-stage bootstrap as it is now (the
test clips drawn once for all splits) beside the earlier per-split draws, from the students'
saved class scores: nothing is trained.

    python bench/bench_ci_recheck.py --name skewed_default --work runs/sd2/work \
        --variants runs/sd2/data-a/variants.json runs/sd2/data-b/variants.json

For each variant with ablation.json and scores.npz in ``--work`` (bench_skewed_default.py's
layout): the labels from the variant's folder, the teacher's and each run's predictions from
scores.npz, the runs' test parts from ablation.json. The earlier estimator is rerun with the
seed and resample count the benchmark used and must give the interval ablation.json recorded
(checked: the script stops otherwise), so the two columns differ only by the estimator. Writes
bench/results/ci_recheck_<name>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench_ci_coverage import per_split_draws

RESULTS = Path(__file__).resolve().parent / "results"


def outcomes(work: Path, variant: dict):
    """(before_ok, after_ok, split_ids, clip_ids, labels of the outcomes, the default's row)."""
    from claptune.data import load_dataset

    result = json.loads((work / "ablation.json").read_text())
    row = next(r for r in result["rows"] if r["loss"] is not None)
    index = next(i for i, r in enumerate(result["rows"]) if r is row)
    scores = np.load(work / "scores.npz")
    labels = np.asarray(load_dataset("esc50", root=variant["path"]).labels)
    teacher = scores["teacher"].argmax(1)
    students = scores[f"row{index}"].argmax(2)
    n_seeds = len(result["seeds"])
    if students.shape != (len(result["splits"]) * n_seeds, len(labels)):
        raise SystemExit(f"{variant['name']}: scores do not match the splits x seeds")
    before, after, splits, clips = [], [], [], []
    for k, pred in enumerate(students):
        split = result["splits"][k // n_seeds]
        test = np.asarray(split["test"])
        before.append(teacher[test] == labels[test])
        after.append(pred[test] == labels[test])
        splits.append(np.full(len(test), k // n_seeds))
        clips.append(test)
    return [np.concatenate(x) for x in (before, after, splits, clips)], labels, row


def recheck(work: Path, variant: dict, resamples: int) -> dict:
    from claptune.stats import two_stage_bootstrap

    (before, after, splits, clips), labels, row = outcomes(work, variant)
    out: dict = {"name": variant["name"]}
    for key, lab in (("two_stage", None), ("class_mean_two_stage", labels[clips])):
        recorded = row[key]
        old = per_split_draws(before, after, splits, clips, resamples, 0, labels=lab)
        if not np.allclose(old, [recorded["ci_low"], recorded["ci_high"]], atol=1e-9):
            raise SystemExit(
                f"{variant['name']} {key}: the earlier estimator gives {old}, ablation.json "
                f"recorded [{recorded['ci_low']}, {recorded['ci_high']}]"
            )
        new = two_stage_bootstrap(
            before, after, splits, clips, labels=lab, n_resamples=resamples, seed=0
        )
        if not np.isclose(new.difference, recorded["difference"]):
            raise SystemExit(f"{variant['name']} {key}: the point estimate differs")
        out[key] = {
            "difference": new.difference,
            "earlier": [float(old[0]), float(old[1])],
            "now": [new.ci_low, new.ci_high],
        }
    return out


def main(argv=None) -> int:
    from claptune.improve.runs import TWO_STAGE_RESAMPLES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="results name: ci_recheck_<name>")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--variants", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    variants = [v for f in args.variants for v in json.loads(f.read_text())]
    rows = []
    for v in variants:
        if (args.work / v["name"] / "scores.npz").is_file():
            rows.append(recheck(args.work / v["name"], v, TWO_STAGE_RESAMPLES))
            print(rows[-1]["name"], rows[-1]["two_stage"], flush=True)

    def count(key, when, side):
        return sum(
            (r[key][when][1] < 0) if side == "below" else (r[key][when][0] > 0) for r in rows
        )

    def width(key, when):
        return float(np.mean([r[key][when][1] - r[key][when][0] for r in rows]))

    summary = {
        key: {
            when: {
                "below_0": count(key, when, "below"),
                "above_0": count(key, when, "above"),
                "mean_width": width(key, when),
            }
            for when in ("earlier", "now")
        }
        for key in ("two_stage", "class_mean_two_stage")
    }
    result = {
        "command": "python bench/bench_ci_recheck.py " + " ".join(argv or sys.argv[1:]),
        "targets": len(rows),
        "resamples": TWO_STAGE_RESAMPLES,
        "summary": summary,
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {platform.system()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"ci_recheck_{args.name}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")

    def ci(pair):
        return f"[{100 * pair[0]:+.1f}, {100 * pair[1]:+.1f}]"

    lines = [
        f"{len(rows)} targets of bench/results/{args.name}.md, the default's gain over the teacher with its "
        f"two-stage 95 % interval ({TWO_STAGE_RESAMPLES} resamples, seed 0), the earlier "
        "per-split clip draws (as recorded) and the joint draw used now.",
        "",
        "| | intervals below 0 | above 0 | mean width (points) |",
        "|---|---:|---:|---:|",
    ]
    for key, what in (("two_stage", "clip"), ("class_mean_two_stage", "class mean")):
        for when in ("earlier", "now"):
            s = summary[key][when]
            lines.append(
                f"| {what}, {when} | {s['below_0']} | {s['above_0']} "
                f"| {100 * s['mean_width']:.1f} |"
            )
    lines += [
        "",
        "| target | clip gain | earlier | now | class-mean gain | earlier | now |",
        "|---|---:|---|---|---:|---|---|",
    ]
    for r in rows:
        a, b = r["two_stage"], r["class_mean_two_stage"]
        lines.append(
            f"| {r['name']} | {100 * a['difference']:+.1f} | {ci(a['earlier'])} | {ci(a['now'])} "
            f"| {100 * b['difference']:+.1f} | {ci(b['earlier'])} | {ci(b['now'])} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
