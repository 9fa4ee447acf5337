"""How often the headline interval covers the true gain: the two-stage bootstrap as shipped
(splits drawn, then the clips once for all splits) against the earlier per-split clip draws and
the clip bootstrap with the splits held fixed, on simulated runs with a known gain of 0.

    python bench/bench_ci_coverage.py [--sims 200]

Each simulation draws a target of ``--clips`` clips (a difficulty per clip, Beta(2, 4); the
teacher right on a clip with that probability), one "after" outcome per clip that changes
the teacher's outcome symmetrically (15 % of right clips turn wrong, as many wrong ones right
in expectation: the gain over the clip population is 0), and 3 random splits x 3 seeds whose
test parts (``--test-fraction`` of the clips) overlap as improve's random splits do. A run
shares the clip's "after" outcome with probability ``rho`` (runs of one target agree on most
clips) and draws its own otherwise. Coverage: the share of simulations whose 95 % interval
holds 0. Writes bench/results/ci_coverage.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FLIP = 0.15  # share of the teacher's right clips an "after" outcome turns wrong


def per_split_draws(before, after, splits, clips, n_resamples, seed, labels=None):
    """The earlier estimator (claptune before 2026-12-07), step for step: splits drawn, then
    each drawn split's test clips on their own. (low, high) of the 95 % interval; with
    ``labels`` the class-mean difference. The same seed gives the intervals it recorded."""
    d = np.asarray(after, float) - np.asarray(before, float)
    split_ids = np.unique(splits, return_inverse=True)[1]
    n_splits = split_ids.max() + 1
    class_ids = None if labels is None else np.unique(labels, return_inverse=True)[1]
    members = []
    local = np.empty(d.size, dtype=np.int64)
    for s in range(n_splits):
        rows = np.flatnonzero(split_ids == s)
        uniq, inv = np.unique(np.asarray(clips)[rows], return_inverse=True)
        local[rows] = inv
        members.append((rows, len(uniq)))

    def statistic(w):
        if class_ids is None:
            return (w * d).sum() / w.sum()
        n_c = np.bincount(class_ids, weights=w)
        d_c = np.bincount(class_ids, weights=w * d)
        present = n_c > 0
        return np.mean(d_c[present] / n_c[present])

    rng = np.random.default_rng(seed)
    samples = np.empty(n_resamples)
    for r in range(n_resamples):
        w = np.zeros(d.size)
        times = np.bincount(rng.integers(0, n_splits, n_splits), minlength=n_splits)
        for s, t in enumerate(times):
            if t == 0:
                continue
            rows, n = members[s]
            for _ in range(t):
                w[rows] += np.bincount(rng.integers(0, n, n), minlength=n)[local[rows]]
        samples[r] = statistic(w)
    return np.quantile(samples, [0.025, 0.975])


def simulate(rng, n_clips, test_fraction, rho):
    p = rng.beta(2, 4, n_clips)
    before_clip = rng.random(n_clips) < p
    back = FLIP * p.mean() / (1 - p.mean())  # wrong -> right, so that the expected gain is 0

    def after_of(b, u):
        return np.where(b, u >= FLIP, u < back)

    after_clip = after_of(before_clip, rng.random(n_clips))
    splits, clips, before, after = [], [], [], []
    n_test = int(round(test_fraction * n_clips))
    for s in range(3):
        test = rng.permutation(n_clips)[:n_test]
        for _seed in range(3):
            own = after_of(before_clip[test], rng.random(n_test))
            shared = rng.random(n_test) < rho
            splits += [s] * n_test
            clips += test.tolist()
            before += before_clip[test].tolist()
            after += np.where(shared, after_clip[test], own).tolist()
    return [np.asarray(x) for x in (before, after, splits, clips)]


def main(argv=None) -> int:
    from claptune.stats import paired_bootstrap, two_stage_bootstrap

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sims", type=int, default=200)
    ap.add_argument("--clips", type=int, default=160)
    ap.add_argument("--resamples", type=int, default=400)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for test_fraction in (0.5, 0.25):
        for rho in (0.9, 1.0):
            rng = np.random.default_rng(1)
            hits = {"two-stage, clips drawn once (shipped)": [], "two-stage, clips per split": []}
            hits["clip bootstrap, splits fixed"] = []
            for k in range(args.sims):
                b, a, s, c = simulate(rng, args.clips, test_fraction, rho)
                shipped = two_stage_bootstrap(b, a, s, c, n_resamples=args.resamples, seed=k)
                old = per_split_draws(b, a, s, c, args.resamples, k)
                clip = paired_bootstrap(b, a, groups=c, n_resamples=args.resamples, seed=k)
                for name, (lo, hi) in zip(
                    hits,
                    [(shipped.ci_low, shipped.ci_high), old, (clip.ci_low, clip.ci_high)],
                    strict=True,
                ):
                    hits[name].append((lo <= 0 <= hi, hi - lo))
            for name, h in hits.items():
                h = np.array(h, dtype=float)
                rows.append(
                    {
                        "test_fraction": test_fraction,
                        "rho": rho,
                        "interval": name,
                        "coverage": float(h[:, 0].mean()),
                        "width": float(h[:, 1].mean()),
                    }
                )
                print(rows[-1], flush=True)
    result = {
        "command": "python bench/bench_ci_coverage.py " + " ".join(argv or sys.argv[1:]),
        "sims": args.sims,
        "clips": args.clips,
        "resamples": args.resamples,
        "rows": rows,
        "seconds": round(time.time() - t0, 1),
        "machine": f"{platform.machine()}, {platform.system()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ci_coverage.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"Simulated targets of {args.clips} clips with a true gain of 0, 3 random splits x 3 "
        f"seeds, {args.sims} simulations per setting, {args.resamples} resamples per interval "
        f"(`{result['command'].strip()}`, {result['seconds']:.0f} s). Coverage: share of the "
        "nominal 95 % intervals that hold 0; width in points.",
        "",
        "| test fraction | runs share a clip's outcome | interval | coverage (%) | width |",
        "|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['test_fraction']:g} | {100 * r['rho']:.0f} % | {r['interval']} | "
            f"{100 * r['coverage']:.1f} | {100 * r['width']:.1f} |"
        )
    (args.out / "ci_coverage.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
