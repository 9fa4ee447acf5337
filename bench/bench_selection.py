"""Which configuration would a user without target labels choose, and what would it cost them?

    python bench/bench_selection.py runs/selection/main runs/selection/r10-o100 ...
    python bench/bench_selection.py --run --root ../shared/data/esc50-subset \
        --variants r1-o100 r10-o100 r10-o101 r10-o102 r10-o107 r40-o100 r40-o107

Each argument is an ``ablate`` folder (ablation.json + scores.npz: every student's class scores
on every clip) of the full grid (teacher, replay only, every curation method with both
losses). For each target, each label-free signal is computed per trained row from the students'
scores and the teacher's view of the audio alone; the target's labels are read afterwards, only
to score what the signal would pick:

- ``pseudo_agreement`` (the signal ``ablate``'s table picks by): agreement of the students with
  the teacher's refined pseudo-labels on the adaptation clips
  (``Workspace.reference_labels``: k-NN smoothing, Sinkhorn to equal shares);
- ``pseudo_agreement_held_out``: the same on the test part's audio (labels unread);
- ``pseudo_agreement_unsure``: the same on the adaptation clips whose refined pseudo-label is
  below its median confidence, the half ``pseudo_refined`` does not curate (so no row trained
  on these clips' reference labels);
- ``neg_entropy`` / ``info_max``: mean confidence (-entropy), and information maximisation
  (entropy of the mean prediction minus mean entropy) on the test part's audio;
- ``seed_agreement``: how often students of one split but different seeds agree there;
- ``transfer_class_mean``: class-mean accuracy on the caption-named held-out corpus clips;
- ``a2t_R@1``: held-out corpus retrieval (the forgetting check).

Per signal and target: Spearman's rho between signal and test-part accuracy over the rows (also
without the ``pseudo_refined`` rows, which trained on labels of the reference's kind), the
regret (accuracy of the best row minus that of the picked row, points) and the picked row;
random-pick regret (best minus mean row) for reference. ``--run`` first runs ``ablate`` with
the full grid on the ESC-50 subset (test fraction 0.5) and on the named long-tailed variants
of ``make_skewed.py`` (test fraction 0.25), one after the other.
Results: bench/results/selection.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = "pseudo_refined / hard"  # improve's shipped default row
SIGNALS = (
    "pseudo_agreement",
    "pseudo_agreement_held_out",
    "pseudo_agreement_unsure",
    "neg_entropy",
    "info_max",
    "seed_agreement",
    "transfer_class_mean",
    "a2t_R@1",
)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def target_rows(folder: Path) -> tuple[dict, list[dict]]:
    """(ablation.json, one dict per trained row: test accuracy, class-mean accuracy, signals)."""
    from claptune.improve.config import ImproveConfig
    from claptune.improve.workspace import Workspace
    from claptune.stats import class_mean_accuracy

    result = json.loads((folder / "ablation.json").read_text())
    scores = np.load(folder / "scores.npz")
    trained = [i for i, r in enumerate(result["rows"]) if r["loss"] is not None]
    if any(
        f"row{i}" not in scores
        or scores[f"row{i}"].dtype != np.float32
        or "label_free_signals" not in result["rows"][i]
        for i in trained
    ):
        raise SystemExit(
            f"{folder}: written by an older claptune (scores not float32, or no "
            "label_free_signals): rerun its ablate"
        )
    config = ImproveConfig.from_dict(result["config"])
    ws = Workspace(config, Path(tempfile.mkdtemp(prefix="bench-selection-")), progress=False)
    labels = ws.labels  # read to score, after every signal below is computed
    scale = float(ws.teacher.logit_scale.detach())
    splits = result["splits"]
    n_seeds = len(result["seeds"])
    transfer = scores["transfer_labels"] if "transfer_labels" in scores else None
    unsure = {}
    for split in splits:
        adapt = np.array(split["adapt"])
        conf = ws.reference_probs(adapt).max(1)
        unsure[split["index"]] = adapt[conf < np.median(conf)]
    teacher = scores["teacher"].argmax(1)
    result["teacher_pseudo_agreement"] = float(
        np.mean(
            [
                np.mean(teacher[a] == ws.reference_labels(a))
                for a in (np.array(s["adapt"]) for s in splits)
            ]
        )
    )
    rows = []
    for i, row in enumerate(result["rows"]):
        if row["loss"] is None or f"row{i}" not in scores:
            continue
        runs = scores[f"row{i}"].astype(np.float64)
        per_run, by_split = [], {}
        for k, split in enumerate(splits):
            adapt, test = np.array(split["adapt"]), np.array(split["test"])
            for j in range(n_seeds):
                r = k * n_seeds + j
                pred = runs[r].argmax(1)
                p = _softmax(scale * runs[r][test])
                signals = {
                    "pseudo_agreement": np.mean(pred[adapt] == ws.reference_labels(adapt)),
                    "pseudo_agreement_held_out": np.mean(pred[test] == ws.reference_labels(test)),
                    "pseudo_agreement_unsure": np.mean(
                        pred[unsure[split["index"]]]
                        == ws.reference_labels(adapt)[np.isin(adapt, unsure[split["index"]])]
                    ),
                    "neg_entropy": -_entropy(p).mean(),
                    "info_max": _entropy(p.mean(0)) - _entropy(p).mean(),
                }
                if transfer is not None and f"row{i}_transfer" in scores:
                    tp = scores[f"row{i}_transfer"][r].argmax(1)
                    signals["transfer_class_mean"] = class_mean_accuracy(tp, transfer)
                signals["accuracy"] = np.mean(pred[test] == labels[test])
                signals["class_mean"] = class_mean_accuracy(pred[test], labels[test])
                per_run.append(signals)
                by_split.setdefault(k, []).append(pred[test])
        agg = {key: float(np.mean([s[key] for s in per_run])) for key in per_run[0]}
        pairs = [
            np.mean(ps[a] == ps[b])
            for ps in by_split.values()
            for a in range(len(ps))
            for b in range(a + 1, len(ps))
        ]
        agg["seed_agreement"] = float(np.mean(pairs)) if pairs else float("nan")
        agg["a2t_R@1"] = (row.get("retrieval_after") or {}).get("a2t_R@1", float("nan"))
        agg["name"] = row["name"]
        agg["gain"] = row["gain"]["mean"]
        agg["gain_ci"] = [row["bootstrap"]["ci_low"], row["bootstrap"]["ci_high"]]
        agg["class_mean_gain"] = row["class_mean_gain"]["mean"]
        agg["class_mean_gain_ci"] = [
            row["class_mean_bootstrap"]["ci_low"],
            row["class_mean_bootstrap"]["ci_high"],
        ]
        recorded = row["label_free_signals"].get("pseudo_agreement")
        if recorded is not None and abs(recorded - agg["pseudo_agreement"]) > 1e-9:
            raise SystemExit(
                f"{folder}: {row['name']}: pseudo_agreement {agg['pseudo_agreement']} here, "
                f"{recorded} in ablation.json"
            )
        rows.append(agg)
    return result, rows


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over the rows where both are finite; NaN when either is constant."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def judge(rows: list[dict]) -> dict:
    """Per signal: rho with accuracy over rows, regret of its pick, and the pick."""
    acc = np.array([r["accuracy"] for r in rows])
    cm = np.array([r["class_mean"] for r in rows])
    out = {
        "label_pick": rows[int(np.argmax(acc))]["name"],
        "best_accuracy": float(acc.max()),
        "random_regret": float(acc.max() - acc.mean()),
        "signals": {},
    }
    for s in SIGNALS:
        v = np.array([r.get(s, np.nan) for r in rows], dtype=float)
        if np.all(np.isnan(v)):
            continue
        pick = int(np.nanargmax(v))
        # the rows that did not train on the reference's own kind of labels
        other = np.array(["pseudo_refined" not in r["name"] for r in rows])
        out["signals"][s] = {
            "rho": _rho(v, acc),
            "rho_other_rows": _rho(v[other], acc[other]),
            "rho_class_mean": _rho(v, cm),
            "regret": float(acc.max() - acc[pick]),
            "class_mean_regret": float(cm.max() - cm[pick]),
            "pick": rows[pick]["name"],
            "pick_accuracy": float(acc[pick]),
        }
    return out


def markdown(targets: dict[str, dict], note: str = "") -> str:
    lines = [note, ""] if note else []
    lines += [
        "| target | rows | label pick (acc.) | random-pick regret | pseudo_agreement pick "
        "(regret) | rho | pseudo_agreement: teacher / pick | default's gain [95 % CI] "
        "| default's class-mean gain [95 % CI] |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, t in targets.items():
        s = t["signals"].get("pseudo_agreement")
        pick = "" if s is None else f"{s['pick']} ({100 * s['regret']:.1f})"
        rho = "" if s is None else f"{s['rho']:+.2f}"
        picked = next((r for r in t["rows"] if s and r["name"] == s["pick"]), None)
        agree = (
            f"{100 * t['teacher_pseudo_agreement']:.1f} / {100 * picked['pseudo_agreement']:.1f}"
            if picked
            else ""
        )
        d = next((r for r in t["rows"] if r["name"] == DEFAULT), None)
        gain = cm = ""
        if d is not None:
            gain = f"{100 * d['gain']:+.1f} [{100 * d['gain_ci'][0]:+.1f}, {100 * d['gain_ci'][1]:+.1f}]"
            cm = (
                f"{100 * d['class_mean_gain']:+.1f} [{100 * d['class_mean_gain_ci'][0]:+.1f}, "
                f"{100 * d['class_mean_gain_ci'][1]:+.1f}]"
            )
        lines.append(
            f"| {name} | {t['n_rows']} | {t['label_pick']} ({100 * t['best_accuracy']:.1f}) "
            f"| {100 * t['random_regret']:.1f} | {pick} | {rho} | {agree} | {gain} | {cm} |"
        )
    lines += [
        "",
        "Every signal, mean over the targets above (regret in points of test-part accuracy; "
        "rho = Spearman over a target's rows; picks of the shipped default = how many targets "
        "the signal picks the shipped default, `pseudo_refined / hard`, on):",
        "",
        "| signal | mean rho | mean rho (class-mean) | mean rho without pseudo_refined rows "
        "| mean regret | worst regret | mean class-mean regret | picks of the default |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in SIGNALS:
        got = [t["signals"][s] for t in targets.values() if s in t["signals"]]
        if not got:
            continue
        default = sum(g["pick"] == DEFAULT for g in got)
        lines.append(
            f"| {s} | {np.nanmean([g['rho'] for g in got]):+.2f} "
            f"| {np.nanmean([g['rho_class_mean'] for g in got]):+.2f} "
            f"| {np.nanmean([g['rho_other_rows'] for g in got]):+.2f} "
            f"| {100 * np.mean([g['regret'] for g in got]):.1f} "
            f"| {100 * max(g['regret'] for g in got):.1f} "
            f"| {100 * np.mean([g['class_mean_regret'] for g in got]):.1f} "
            f"| {default}/{len(got)} |"
        )
    random = np.mean([t["random_regret"] for t in targets.values()])
    lines.append(f"| (random row) | | | | {100 * random:.1f} | | | |")
    return "\n".join(lines) + "\n"


def run_grid(args) -> list[Path]:
    """``ablate`` with the full grid on the subset and on each skewed variant."""
    from claptune.improve.ablation import ablation_grid, run_ablation
    from claptune.improve.config import ImproveConfig
    from make_skewed import named_variant

    targets = [("main", Path(args.root), 0.5)]
    for name in args.variants:
        v = named_variant(Path(args.root), args.data, name)
        targets.append((v["name"], Path(v["path"]), 0.25))
    folders = []
    for name, root, test_fraction in targets:
        config = ImproveConfig(
            model=args.model,
            target="esc50",
            root=str(root),
            n_splits=3,
            n_seeds=3,
            test_fraction=test_fraction,
        )
        print(f"[bench_selection] ablate {name}", flush=True)
        run_ablation(config, args.work / name, ablation_grid(), progress=False)
        folders.append(args.work / name)
    return folders


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="*", type=Path, help="ablate folders with scores.npz")
    ap.add_argument("--run", action="store_true", help="run the ablations first (see --root)")
    ap.add_argument("--root", help="ESC-50 layout to run on and draw skewed variants from")
    ap.add_argument("--data", type=Path, default=Path("runs/selection-data"))
    ap.add_argument("--work", type=Path, default=Path("runs/selection"))
    ap.add_argument(
        "--variants",
        nargs="*",
        default=["r1-o0", "r10-o0", "r10-o1", "r40-o0"],
        help="long-tailed variants to run beside the subset, as r<ratio>-o<order>",
    )
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="written above the tables")
    args = ap.parse_args(argv)
    t0 = time.time()
    folders = list(args.folders)
    if args.run:
        if not args.root:
            ap.error("--run needs --root")
        folders += run_grid(args)
    if not folders:
        ap.error("give ablate folders, or --run --root ROOT")
    targets = {}
    for folder in folders:
        result, rows = target_rows(folder)
        targets[folder.name] = {
            "folder": str(folder),
            "root": result["root"],
            "teacher_pseudo_agreement": result["teacher_pseudo_agreement"],
            "n_rows": len(rows),
            "rows": rows,
            **judge(rows),
        }
        print(f"[bench_selection] {folder.name}: {len(rows)} rows", flush=True)
    out = {
        "command": "python bench/bench_selection.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "seconds": time.time() - t0,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "selection.json").write_text(json.dumps(out, indent=2, default=float))
    text = markdown(targets, args.note)
    (args.out / "selection.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
