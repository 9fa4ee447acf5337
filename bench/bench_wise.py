"""The weight-space ensemble (WiSE-FT) against the transfer check: how much of the target gain
and of what the teacher knew does each ``wise_alpha`` keep?

    python bench/bench_wise.py --root ../shared/data/esc50-subset --data runs/wise-data \
        --variants r1-o102 r10-o101 r40-o101

For the subset itself (test fraction 0.5) and each named long-tailed variant of
``make_skewed.py`` (``r<ratio>-o<order>``, test fraction 0.25), ``improve``'s default
(``pseudo_refined``, hard loss) is trained on 3 grouped splits x 3 seeds; each student is then
interpolated with the teacher at every alpha (``claptune.train.loop.interpolate_weights``: the
same ensemble ``--train wise_alpha=A`` keeps, without retraining) and scored: test-part clip and
class-mean accuracy, the transfer check (held-out corpus clips whose caption names one class),
held-out retrieval, and the label-free ``pseudo_agreement``. Results: bench/results/wise.json
and .md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
ALPHAS = (1.0, 0.8, 0.6, 0.5, 0.4)


def measure(root: str, test_fraction: float, alphas=ALPHAS, model: str = "default") -> dict:
    from claptune.evaluate.metrics import accuracy, class_mean_accuracy
    from claptune.improve.config import ImproveConfig
    from claptune.improve.loop import Runner, Variant
    from claptune.improve.workspace import Workspace
    from claptune.train.loop import interpolate_weights

    config = ImproveConfig(
        model=model, target="esc50", root=root, test_fraction=test_fraction, n_splits=3, n_seeds=3
    )
    ws = Workspace(config, Path(tempfile.mkdtemp(prefix="bench-wise-")), progress=False)
    start = {k: v.detach().clone() for k, v in ws.teacher.state_dict().items()}
    per = {a: [] for a in alphas}
    before = [
        (
            accuracy(ws.pred_before[s.test], ws.labels[s.test]),
            class_mean_accuracy(ws.pred_before[s.test], ws.labels[s.test]),
        )
        for s in ws.splits
    ]
    # improve's one split x seed loop; each student is then scored at every mixing weight
    for t in Runner(ws).trainings(Variant.of(ws)):
        test = t.split.test
        for a in alphas:
            model_a = copy.deepcopy(t.student)
            interpolate_weights(model_a, start, a)
            o = ws.outcome(t.split, t.seed, t.pairs, model_a, t.result)
            per[a].append(
                {
                    "accuracy": accuracy(o.pred_after[test], ws.labels[test]),
                    "class_mean": class_mean_accuracy(o.pred_after[test], ws.labels[test]),
                    "transfer": accuracy(o.transfer_after, ws.transfer_labels),
                    "transfer_class_mean": class_mean_accuracy(
                        o.transfer_after, ws.transfer_labels
                    ),
                    "a2t_R@1": o.retrieval_after.get("a2t_R@1"),
                    "pseudo_agreement": o.agreement.get("pseudo_agreement"),
                }
            )
    b = np.mean(before, axis=0)
    return {
        "root": root,
        "test_fraction": test_fraction,
        "before": {
            "accuracy": float(b[0]),
            "class_mean": float(b[1]),
            "transfer": accuracy(ws.transfer_before, ws.transfer_labels),
            "transfer_class_mean": class_mean_accuracy(ws.transfer_before, ws.transfer_labels),
            "a2t_R@1": ws.retrieval_before.get("a2t_R@1"),
        },
        "alphas": {
            str(a): {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            for a, runs in per.items()
        },
    }


def markdown(targets: dict[str, dict], note: str = "") -> str:
    lines = [note, ""] if note else []
    lines += [
        "Test-part accuracy gain (points, mean of 9 runs), transfer-check clip accuracy "
        "(teacher first), class-mean accuracy on the transfer clips, held-out a2t R@1 and the "
        "label-free pseudo_agreement, per wise_alpha (1 = the plain fine-tune, the default).",
        "",
        "| target | alpha | gain | class-mean gain | transfer acc. | transfer class-mean "
        "| a2t R@1 | pseudo_agreement |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, t in targets.items():
        b = t["before"]
        lines.append(
            f"| {name} | teacher | | | {100 * b['transfer']:.1f} "
            f"| {100 * b['transfer_class_mean']:.1f} | {100 * b['a2t_R@1']:.1f} | |"
        )
        for a, r in t["alphas"].items():
            lines.append(
                f"| {name} | {a} | {100 * (r['accuracy'] - b['accuracy']):+.1f} "
                f"| {100 * (r['class_mean'] - b['class_mean']):+.1f} "
                f"| {100 * r['transfer']:.1f} | {100 * r['transfer_class_mean']:.1f} "
                f"| {100 * r['a2t_R@1']:.1f} | {100 * r['pseudo_agreement']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    from make_skewed import named_variant

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="the ESC-50 layout (the subset)")
    ap.add_argument("--data", type=Path, default=Path("runs/wise-data"))
    ap.add_argument("--variants", nargs="*", default=[], help="r<ratio>-o<order> names")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    t0 = time.time()
    targets = {"subset": measure(args.root, 0.5, model=args.model)}
    print(markdown(targets), flush=True)
    for name in args.variants:
        v = named_variant(Path(args.root), args.data, name)
        targets[name] = measure(str(v["path"]), 0.25, model=args.model)
        print(markdown({name: targets[name]}), flush=True)
    out = {
        "command": "python bench/bench_wise.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "seconds": time.time() - t0,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "wise.json").write_text(json.dumps(out, indent=2))
    text = markdown(targets, args.note)
    (args.out / "wise.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
