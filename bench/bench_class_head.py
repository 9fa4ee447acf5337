"""The class head at 8:1: improve's student with and without its class head, and the teacher
with its own, on the same splits and trainings.

    python bench/bench_class_head.py --root ../shared/data/esc50-subset --work runs/class-head \
        --orders 9800 9801 9802 9803 9804 9805 9806 9807 9808 9809 --seeds 3

Each target is an 8:1 variant of the subset (``make_skewed``, class sizes 8 down to 1, 168
clips) run by ``claptune ablate``'s default row (refined pseudo-labels, hard loss, the class
head at its default weight) with 3 grouped splits x ``--seeds`` seeds and ``--test-fraction
0.25``. The head never changes a training: "student" (with the head, what ``improve`` reports
as after), "student, no class head" and "teacher + class head" are pipelines of the same runs,
each a pooled two-stage gain over the teacher's plain zero-shot ensemble. Resumable (a target
whose ablation.json is in ``--work`` is read). Results: bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import write_results
from bench_levers import run_lever
from make_skewed import make_variants

RESULTS = Path(__file__).resolve().parent / "results"
PIPELINES = ("student", "student, no class head", "teacher + class head")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout to draw the variants from")
    ap.add_argument("--data", type=Path, default=Path("runs/class-head-data"))
    ap.add_argument("--work", type=Path, default=Path("runs/class-head"))
    ap.add_argument("--orders", type=int, nargs="+", default=list(range(9800, 9810)))
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per split (3)")
    ap.add_argument("--name", default="class_head", help="results name (bench/results/NAME.md)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    variants = make_variants(Path(args.root), args.data, [8], args.orders, controls=False)
    gains: dict[str, dict[str, list[float]]] = {}
    for v in variants:
        print(f"[bench_class_head] {v['name']}", flush=True)
        row = run_lever("default", v, args.work, args.seeds)["rows"][1]
        pipes = row["pipelines"]
        gains[v["name"]] = {
            p: [pipes[p]["gain"]["difference"], pipes[p]["class_mean_gain"]["difference"]]
            for p in PIPELINES
        }
    names = sorted(gains)
    lines = [
        "| target | student | class mean | student, no class head | class mean | head's margin "
        "(clip) | teacher + class head | class mean |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pts(x: float) -> str:
        return f"{100 * x:+.1f}"

    for n in names:
        g = gains[n]
        lines.append(
            f"| {n} | {pts(g['student'][0])} | {pts(g['student'][1])} "
            f"| {pts(g['student, no class head'][0])} | {pts(g['student, no class head'][1])} "
            f"| {pts(g['student'][0] - g['student, no class head'][0])} "
            f"| {pts(g['teacher + class head'][0])} | {pts(g['teacher + class head'][1])} |"
        )
    mean = {p: np.mean([gains[n][p] for n in names], axis=0) for p in PIPELINES}
    margin = np.array(
        [gains[n]["student"][0] - gains[n]["student, no class head"][0] for n in names]
    )
    cm_margin = np.array(
        [gains[n]["student"][1] - gains[n]["student, no class head"][1] for n in names]
    )
    lines.append(
        f"| mean of {len(names)} | {pts(mean['student'][0])} | {pts(mean['student'][1])} "
        f"| {pts(mean['student, no class head'][0])} | {pts(mean['student, no class head'][1])} "
        f"| {pts(margin.mean())} | {pts(mean['teacher + class head'][0])} "
        f"| {pts(mean['teacher + class head'][1])} |"
    )
    lines += [
        "",
        f"The head above the student without it on {int((margin > 0).sum())} of {len(names)} "
        f"targets, level on {int((margin == 0).sum())}; class-mean margin {pts(cm_margin.mean())}.",
    ]
    md = "\n".join(lines) + "\n"
    data = {"gains": gains, "margin": margin.tolist(), "class_mean_margin": cm_margin.tolist()}
    write_results(args.out, args.name, data, md, script="bench_class_head.py", argv=argv, t0=t0)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
