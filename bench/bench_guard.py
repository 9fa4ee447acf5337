"""The label-free pipelines and the guard on skewed targets: does fine-tuning help beyond
relabelling, and does the guard keep the better of student and teacher without a label?

    python bench/bench_guard.py --root ../shared/data/esc50-subset --data runs/guard-data \
        --work runs/guard --variants r10-o2000 r10-o2001 ... r4-o2000 ...

Each variant (``make_skewed.named_variant``: ``r<ratio>-o<order>``) gets one ``claptune
improve`` run with the defaults and ``--test-fraction 0.25`` (3 grouped splits x 3 seeds).
Its report.json holds, per run, the test-part accuracy of every label-free pipeline (the
teacher's plain zero-shot ensemble, the teacher with each transduction, the student plain and
with transduction, and what the guard hands a user) and the guard's signals and decision; the
labels are read by improve only to score. This script gathers them: per target the pipelines
side by side (mean over runs, two-stage CIs from the report), and over all runs how often the
guard kept a student that loses against teacher + transduction and rejected one that gains,
plus the same for the other recorded signal (``agreement_*``) as a comparison. Runs whose
report.json exists are reused. Writes bench/results/guard.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from make_skewed import named_variant

RESULTS = Path(__file__).resolve().parent / "results"


def run_variant(root: Path, data: Path, work: Path, name: str) -> dict:
    out = work / name
    if not (out / "report.json").is_file():
        variant = named_variant(root, data, name)
        from claptune.cli import main

        argv = [
            "improve",
            "--target",
            "esc50",
            "--root",
            variant["path"],
            "--test-fraction",
            "0.25",
            "--no-save-model",
            "--out",
            str(out),
            "--quiet",
        ]
        t0 = time.perf_counter()
        if main(argv) != 0:
            raise SystemExit(f"improve failed on {name}")
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return json.loads((out / "report.json").read_text())


def guard_table(reports: dict[str, dict]) -> dict:
    """Over all runs: each decision rule's keeps and errors against the scored truth (student +
    transduction beats teacher + transduction on the test part)."""
    rules = {
        "consistency (the guard)": lambda g: g["consistency_student"] >= g["consistency_teacher"],
        "agreement with teacher + transduction": lambda g: (
            g["agreement_student"] > g["agreement_teacher"]
        ),
        "always the student": lambda g: True,
        "never the student": lambda g: False,
    }
    runs = [r for rep in reports.values() for r in rep["runs"] if r.get("guard")]
    gain = np.array(
        [
            r["transductive"]["student + transduction"]
            - r["transductive"]["teacher + " + reports_method(reports)]
            for r in runs
        ]
    )
    out = {"runs": len(runs), "student_better": int(np.sum(gain > 0))}
    for name, rule in rules.items():
        keep = np.array([rule(r["guard"]) for r in runs])
        chosen = np.where(keep, gain, 0.0)
        out[name] = {
            "kept": int(keep.sum()),
            "kept_a_loser": int(np.sum(keep & (gain < 0))),
            "rejected_a_gainer": int(np.sum(~keep & (gain > 0))),
            "mean_gain_of_choice_points": float(100 * chosen.mean()),
        }
    signal = np.array(
        [r["guard"]["consistency_student"] - r["guard"]["consistency_teacher"] for r in runs]
    )
    if len(runs) > 2 and signal.std() > 0 and gain.std() > 0:
        from scipy.stats import spearmanr

        out["spearman_consistency_vs_gain"] = float(spearmanr(signal, gain).statistic)
    return out


def reports_method(reports: dict[str, dict]) -> str:
    return next(iter(reports.values()))["transductive"]["method"]


def markdown(result: dict) -> str:
    reports = result["reports"]
    names = list(next(iter(reports.values()))["transductive"]["rows"])
    lines = [
        "# Label-free pipelines and the guard on skewed targets",
        "",
        "`claptune improve` defaults, `--test-fraction 0.25`, 3 grouped splits x 3 seeds per "
        "target; class orders drawn after the transduction default was chosen. Clip accuracy "
        "(mean over runs, %), gain over the teacher's plain zero-shot ensemble in points with "
        "its two-stage 95 % CI; class-mean gain below it.",
        "",
        "| target | pool / test clips | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for target, rep in reports.items():
        rows = rep["transductive"]["rows"]
        split = rep["splits"][0]
        cells = []
        for n in names:
            r = rows[n]
            g, cg = r["gain"], r["class_mean_gain"]
            cells.append(
                f"{100 * r['accuracy']:.1f} ({100 * g['difference']:+.1f} "
                f"[{100 * g['ci_low']:+.1f}, {100 * g['ci_high']:+.1f}]; class mean "
                f"{100 * cg['difference']:+.1f} [{100 * cg['ci_low']:+.1f}, "
                f"{100 * cg['ci_high']:+.1f}])"
            )
        lines.append(
            f"| {target} | {len(split['adapt'])} / {len(split['test'])} | "
            + " | ".join(cells)
            + " |"
        )
    g = result["guard"]
    lines += [
        "",
        f"## The guard over {g['runs']} runs (student + transduction better than teacher + "
        f"transduction on the test part in {g['student_better']})",
        "",
        "| decision rule | students kept | kept a loser | rejected a gainer | mean gain of the "
        "choice over teacher + transduction (points) |",
        "|---|---|---|---|---|",
    ]
    for name, v in g.items():
        if isinstance(v, dict):
            lines.append(
                f"| {name} | {v['kept']} | {v['kept_a_loser']} | {v['rejected_a_gainer']} | "
                f"{v['mean_gain_of_choice_points']:+.2f} |"
            )
    if "spearman_consistency_vs_gain" in g:
        lines.append("")
        lines.append(
            f"Spearman correlation of the guard's signal (consistency of student minus teacher) "
            f"with the scored gain, over runs: {g['spearman_consistency_vs_gain']:+.2f}."
        )
    lines += [
        "",
        f"Machine: {result['machine']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in result['load_average'])}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="where the variants are written")
    ap.add_argument("--work", type=Path, required=True, help="one improve folder per variant")
    ap.add_argument("--variants", nargs="+", required=True, help="r<ratio>-o<order> names")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    reports = {name: run_variant(args.root, args.data, args.work, name) for name in args.variants}
    result = {
        "variants": args.variants,
        "reports": {
            k: {
                "transductive": v["transductive"],
                "splits": [{"adapt": s["adapt"], "test": s["test"]} for s in v["splits"][:1]],
                "runs": [
                    {"transductive": r["transductive"], "guard": r["guard"]} for r in v["runs"]
                ],
            }
            for k, v in reports.items()
        },
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    result["guard"] = guard_table(result["reports"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guard.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "guard.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
