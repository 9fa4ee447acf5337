"""The class head's weight, chosen on 8:1 development orders: one student per split, every weight
scored on the same student, with the head in the student's space and in the teacher's.

    python bench/bench_class_head_weights.py --root ../shared/data/esc50-subset \
        --data runs/levers-data --orders 8100 8101 8102 8103 8104 8105 8106 8107 --name class_head_dev

Each target is an 8:1 variant (``make_skewed``), 3 grouped splits x 1 training seed,
``--test-fraction 0.25``; per split the default student is trained once (``Runner``), then for
each weight the head is fitted on the split's pool (``ClassHead``, no label read) and every
test clip is scored by itself. Also the head added without renormalising the rows ("add"), the
variant not kept. Reports the mean test accuracy of each, and its difference from the same
model without a head. Results: bench/results/<name>.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _results import write_results
from make_skewed import make_variants

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def score_heads(x, prompts, scale, class_names, pool, test, labels, rec, who) -> None:
    """Test accuracy of the plain classifier and of every head on ``x`` (N, D) unit rows."""
    from claptune.evaluate.prototypes import fit_class_head

    text = _unit(prompts.mean(axis=1))
    rec(f"{who}: no head", (x[test] @ text.T).argmax(1) == labels[test])
    for w in WEIGHTS:
        head = fit_class_head(x[pool], prompts, scale, class_names, weight=w)
        rec(
            f"{who}: head {w:g}",
            (x[test] @ head.classifier(text, class_names).T).argmax(1) == labels[test],
        )
        added = text + w * head.rows(class_names)  # rows not renormalised
        rec(f"{who}: add {w:g}", (x[test] @ added.T).argmax(1) == labels[test])


def run_target(path: Path) -> dict[str, float]:
    from claptune.improve.config import ImproveConfig
    from claptune.improve.loop import Runner, Variant
    from claptune.improve.workspace import Workspace

    config = ImproveConfig(
        model="default",
        target="esc50",
        root=str(path),
        test_fraction=0.25,
        n_seeds=1,
        save_model=False,
        class_head=0.0,
    )
    ws = Workspace(config, Path("/tmp/claptune-class-head-weights"), progress=False)
    labels = np.asarray(ws.labels)
    acc: dict[str, list[float]] = {}

    def rec(key, ok):
        acc.setdefault(key, []).append(float(np.mean(ok)))

    teacher = (_unit(ws.target_emb), _unit(ws.prompt_embeddings(ws.teacher)), ws.teacher)
    for t in Runner(ws).trainings(Variant.of(ws)):
        pool, test = np.asarray(t.split.adapt), np.asarray(t.split.test)
        student = (
            _unit(ws.embed_audio(t.student, ws.items)),
            _unit(ws.prompt_embeddings(t.student)),
            t.student,
        )
        for who, (x, prompts, model) in (("teacher", teacher), ("student", student)):
            scale = float(model.logit_scale.detach())
            score_heads(x, prompts, scale, ws.class_names, pool, test, labels, rec, who)
    return {k: float(np.mean(v)) for k, v in acc.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout to draw the variants from")
    ap.add_argument("--data", type=Path, default=Path("runs/levers-data"))
    ap.add_argument("--orders", type=int, nargs="+", default=list(range(8100, 8108)))
    ap.add_argument("--name", default="class_head_dev", help="results name")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    variants = make_variants(Path(args.root), args.data, [8], args.orders, controls=False)
    results = {}
    for v in variants:
        print(f"[bench_class_head_weights] {v['name']}", flush=True)
        results[v["name"]] = run_target(Path(v["path"]))
    names = sorted(results)
    lines = [
        f"{len(names)} 8:1 targets, 3 splits x 1 seed; test accuracy in percent (mean over "
        "targets), and its difference from the same model without a head (targets above it).",
        "",
        "| model: head | accuracy | minus no head | targets above |",
        "|---|---:|---:|---:|",
    ]
    for key in results[names[0]]:
        who = key.split(":")[0]
        v = np.array([results[n][key] for n in names])
        base = np.array([results[n][f"{who}: no head"] for n in names])
        lines.append(
            f"| {key} | {100 * v.mean():.1f} | {100 * (v - base).mean():+.1f} "
            f"| {int((v > base).sum())} |"
        )
    md = "\n".join(lines) + "\n"
    write_results(
        args.out,
        args.name,
        {"results": results},
        md,
        script="bench_class_head_weights.py",
        argv=argv,
        t0=t0,
    )
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
