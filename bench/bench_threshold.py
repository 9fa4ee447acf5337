"""How many refined pseudo-labels to keep, and can the label-free signal choose it?

    python bench/bench_threshold.py --root ../shared/data/esc50-subset --data runs/skewed-data \
        --variants r1-o100 r10-o100 r10-o101 r10-o102 r40-o100
    python bench/bench_threshold.py --summarize runs/threshold/*

For the subset (test fraction 0.5) and each named long-tailed variant of ``make_skewed.py``
(``r<ratio>-o<order>``, test fraction 0.25), ``claptune ablate`` trains ``pseudo_refined`` with
the hard loss at three thresholds of the refined confidence: keep the surest 70 % (``q0.3``),
half (``q0.5``, the default) or 30 % (``q0.7``) of the adaptation clips, 3 grouped splits x 3
seeds each. Per target and threshold: clip and class-mean gain, and the label-free
``pseudo_agreement`` (which would pick the row where it is highest). Results:
bench/results/threshold.json and .md; one ablate folder per target under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = ("q0.3", "q0.5", "q0.7")


def grid():
    from claptune.improve.ablation import AblationEntry

    return [AblationEntry((), None)] + [
        AblationEntry(
            ("pseudo_refined",),
            "hard",
            curation=(("pseudo_refined_threshold", q),),
            label=f"threshold {q}",
        )
        for q in THRESHOLDS
    ]


def summarize(folders: list[Path]) -> dict[str, list[dict]]:
    out = {}
    for folder in folders:
        result = json.loads((folder / "ablation.json").read_text())
        out[folder.name] = [
            {
                "threshold": row["curation"]["pseudo_refined_threshold"],
                "gain": row["gain"]["mean"],
                "gain_ci": [row["bootstrap"]["ci_low"], row["bootstrap"]["ci_high"]],
                "class_mean_gain": row["class_mean_gain"]["mean"],
                "pairs": row["pairs"]["mean"] if row["pairs"] else None,
                "pseudo_agreement": row["label_free"],
            }
            for row in result["rows"]
            if row["loss"] is not None
        ]
    return out


def markdown(targets: dict[str, list[dict]], note: str = "") -> str:
    lines = [note, ""] if note else []
    lines += [
        "| target | threshold (kept share) | pairs/run | gain [95 % CI] | class-mean gain "
        "| pseudo_agreement |",
        "|---|---|---:|---:|---:|---:|",
    ]
    kept = {"q0.3": "70 %", "q0.5": "50 %, default", "q0.7": "30 %"}
    for name, rows in targets.items():
        top = max(rows, key=lambda r: r["pseudo_agreement"])
        for r in rows:
            mark = " (label-free pick)" if r is top else ""
            lines.append(
                f"| {name} | {r['threshold']} ({kept.get(r['threshold'], '')}) "
                f"| {r['pairs']:.0f} | {100 * r['gain']:+.1f} [{100 * r['gain_ci'][0]:+.1f}, "
                f"{100 * r['gain_ci'][1]:+.1f}] | {100 * r['class_mean_gain']:+.1f} "
                f"| {100 * r['pseudo_agreement']:.1f}{mark} |"
            )
    lines += [
        "",
        "| threshold | mean gain over targets | mean class-mean gain |",
        "|---|---:|---:|",
    ]
    for q in THRESHOLDS:
        got = [r for rows in targets.values() for r in rows if r["threshold"] == q]
        if got:
            lines.append(
                f"| {q} | {100 * sum(r['gain'] for r in got) / len(got):+.1f} "
                f"| {100 * sum(r['class_mean_gain'] for r in got) / len(got):+.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", help="the ESC-50 layout (the subset)")
    ap.add_argument("--data", type=Path, default=Path("runs/skewed-data"))
    ap.add_argument("--variants", nargs="*", default=[], help="r<ratio>-o<order> names")
    ap.add_argument("--work", type=Path, default=Path("runs/threshold"))
    ap.add_argument("--summarize", nargs="*", type=Path, help="ablate folders already run")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    t0 = time.time()
    folders = list(args.summarize or [])
    if not folders:
        if not args.root:
            ap.error("--root (to run), or --summarize FOLDER...")
        from claptune.improve.ablation import run_ablation
        from claptune.improve.config import ImproveConfig
        from make_skewed import named_variant

        targets = [("main", args.root, 0.5)]
        for name in args.variants:
            v = named_variant(Path(args.root), args.data, name)
            targets.append((name, str(v["path"]), 0.25))
        for name, root, test_fraction in targets:
            config = ImproveConfig(
                model=args.model,
                target="esc50",
                root=root,
                n_splits=3,
                n_seeds=3,
                test_fraction=test_fraction,
            )
            run_ablation(config, args.work / name, grid(), progress=False)
            folders.append(args.work / name)
    targets = summarize(folders)
    out = {
        "command": "python bench/bench_threshold.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "seconds": time.time() - t0,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threshold.json").write_text(json.dumps(out, indent=2))
    text = markdown(targets, args.note)
    (args.out / "threshold.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
