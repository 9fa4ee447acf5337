"""Can a label-free signal tell a plain student that beats the plain teacher? (single clips)

    python bench/bench_plain_guard.py --work runs/sd2/work --name plain_guard

The guard of ``improve`` and ``adapt`` compares student + transduction with teacher +
transduction, how a batch labeller uses them. A user who later classifies single clips uses the
plain models, so the question there is whether the plain student beats the plain teacher. This
reads the per-run class scores a ``bench_skewed_default.py`` run saved (``scores.npz`` and
``ablation.json`` of each target in ``--work``; no training) and, per run, on its test part:

- the truth, scored from the labels: the plain student's clip accuracy minus the plain
  teacher's;
- the candidate signal, no label read: how often the plain student's class equals teacher +
  transduction's (the default chain over all the target's clips) minus how often the plain
  teacher's does; teacher + transduction is the more accurate labeller on these targets, and it
  is not the student's own training target (the pool's refined labels);
- keep rules: keep the student when the signal is above 0, or when a one-sided sign test over
  the clips where exactly one of the two agrees with teacher + transduction gives p < 0.05 or
  p < 0.2; beside always and never keeping it.

Reports the signal's rank correlation with the gain, and per rule how often it kept the student,
how often it was right (kept a student that gained, or rejected one that did not) and the gain
it hands users on average. Writes bench/results/NAME.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from _results import write_results

RESULTS = Path(__file__).resolve().parent / "results"


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided sign test: P(at least ``wins`` of wins + losses fair coin flips)."""
    from scipy.stats import binomtest

    n = wins + losses
    return float(binomtest(wins, n, 0.5, alternative="greater").pvalue) if n else 1.0


def target_runs(ablation: Path) -> list[dict]:
    """One record per run of a target's saved scores."""
    import tempfile

    from claptune.evaluate.zeroshot import predict_from_scores
    from claptune.improve.config import ImproveConfig
    from claptune.improve.workspace import Workspace

    a = json.loads(ablation.read_text())
    config = ImproveConfig(
        model="default", target="esc50", root=a["root"], test_fraction=0.25, corpus=None
    )
    ws = Workspace(config, Path(tempfile.mkdtemp()), progress=False)
    labels = np.asarray(ws.labels)
    reference = predict_from_scores(ws.teacher_transduced())  # every clip, no label read
    z = np.load(ablation.parent / "scores.npz")
    teacher, students = z["teacher"], z["row1"]
    per_split = students.shape[0] // len(a["splits"])
    out = []
    for r in range(students.shape[0]):
        test = np.asarray(a["splits"][r // per_split]["test"])
        t, s, ref, y = (
            teacher[test].argmax(1),
            students[r][test].argmax(1),
            reference[test],
            labels[test],
        )
        s_agrees, t_agrees = s == ref, t == ref
        wins, losses = int((s_agrees & ~t_agrees).sum()), int((t_agrees & ~s_agrees).sum())
        out.append(
            {
                "target": ablation.parent.name,
                "run": r,
                "gain": float(np.mean(s == y) - np.mean(t == y)),
                "signal": float(s_agrees.mean() - t_agrees.mean()),
                "p": sign_test_p(wins, losses),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import spearmanr

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="a bench_skewed_default --work")
    ap.add_argument("--name", default="plain_guard")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    runs = []
    for ablation in sorted(args.work.glob("r*-o*/ablation.json")):
        runs += target_runs(ablation)
        print(f"[bench_plain_guard] {ablation.parent.name}", flush=True)
    gain = np.array([r["gain"] for r in runs])
    signal = np.array([r["signal"] for r in runs])
    p = np.array([r["p"] for r in runs])
    rho = float(spearmanr(gain, signal).statistic)
    rules = {
        "always keep the student": np.ones(len(runs), bool),
        "signal above 0": signal > 0,
        "sign test, p < 0.2": p < 0.2,
        "sign test, p < 0.05": p < 0.05,
        "never keep it": np.zeros(len(runs), bool),
    }
    table = {}
    for name, keep in rules.items():
        table[name] = {
            "kept": float(keep.mean()),
            "right": float(np.where(keep, gain > 0, gain <= 0).mean()),
            "handed_gain": float(np.where(keep, gain, 0.0).mean()),
        }
    lines = [
        f"{len(runs)} runs of {len({r['target'] for r in runs})} targets; the plain student "
        "gained on "
        f"{100 * float((gain > 0).mean()):.0f} % of them, {100 * gain.mean():+.1f} points on "
        f"average. Rank correlation of the signal with the gain: Spearman {rho:+.2f}.",
        "",
        "| keep rule | kept | right | gain handed to users (points) |",
        "|---|---:|---:|---:|",
    ]
    for name, row in table.items():
        lines.append(
            f"| {name} | {100 * row['kept']:.0f} % | {100 * row['right']:.0f} % "
            f"| {100 * row['handed_gain']:+.1f} |"
        )
    md = "\n".join(lines) + "\n"
    data = {"spearman": rho, "rules": table, "runs": runs}
    write_results(args.out, args.name, data, md, script="bench_plain_guard.py", argv=argv, t0=t0)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
