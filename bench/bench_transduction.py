"""Transductive inference without training, side by side: which label-free pipeline labels the
clips of a skewed target best, and how long it takes.

    python bench/bench_transduction.py --root ../shared/data/esc50-subset \
        --ratios 1 4 10 40 --orders 2000 2001 2002 2003 2004 2005 2006 2007 2008 2009

For each imbalance ratio and class order (the long-tailed variants of ``make_skewed.py``, drawn
by ``bench_priors.pool`` with fraction 1: every clip of the variant), every method of
``claptune.evaluate.transductive`` labels the variant's clips taken together from the teacher's
embeddings alone, as ``claptune zeroshot --transductive`` and ``adapt``'s predictions.csv do;
the labels are read afterwards, only to score (clip accuracy and class-mean accuracy).
``pseudo_refined`` is the refinement curation uses (k-NN smoothing, then Sinkhorn). The default
chain (``claptune``) was chosen on orders 500-505 (ratios 1, 4, 10); the default orders here
were drawn after that choice.

Timing: every method on 2,000 random clips x 50 classes x 8 templates (D = 512) with one
thread, median of 5 runs, with the machine's load recorded.

Writes bench/results/transduction.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from bench_priors import pool

RESULTS = Path(__file__).resolve().parent / "results"


def teacher_view(model_spec: str, root: str, templates: str):
    """(audio (N, D), labels (N,), prompts (C, T, D), logit scale) of the teacher on ESC-50."""
    from claptune.data import load_dataset
    from claptune.evaluate.zeroshot import prompt_embeddings, resolve_templates
    from claptune.features import FeatureStore
    from claptune.improve.config import default_cache_dir
    from claptune.models import load_model

    model = load_model(model_spec).eval()
    ds = load_dataset("esc50", root=root)
    items = [str(p) for p in ds.items]
    if model.supports_feature_cache:  # improve's cache: a run of improve already made them
        store = FeatureStore(model, cache_dir=default_cache_dir(), progress=True)
        store.add_clips(items, "raise", "ESC-50 audio")
        emb = store.embed_audio(model, items)
    else:
        from claptune.embed import encode_audio

        emb = encode_audio(model, items, progress=True).embeddings
    prompts = prompt_embeddings(model, ds.class_names, resolve_templates(templates))
    return emb, np.asarray(ds.labels), prompts, float(model.logit_scale.detach())


def class_mean(pred: np.ndarray, labels: np.ndarray) -> float:
    from claptune.evaluate.metrics import class_mean_accuracy

    return class_mean_accuracy(pred, labels)


def methods(prompts: np.ndarray, scale: float):
    from claptune.curation.pseudo import refined_probs
    from claptune.evaluate.transductive import TRANSDUCTIONS, transduce

    mean = prompts.mean(axis=1)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    out = {m: (lambda a, m=m: transduce(a, prompts, scale, m)) for m in TRANSDUCTIONS}
    out["pseudo_refined"] = lambda a: refined_probs(a, mean, scale, "knn_balance")[0]
    return out


def timing(repeats: int = 5) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    from claptune.evaluate.transductive import TRANSDUCTIONS, transduce

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 512))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    p = rng.normal(size=(50, 8, 512))
    p /= np.linalg.norm(p, axis=2, keepdims=True)
    out = {}
    with threadpool_limits(1):
        transduce(a, p, 16.0, "none")  # warm-up (imports)
        for m in TRANSDUCTIONS:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                transduce(a, p, 16.0, m)
                times.append(time.perf_counter() - t0)
            out[m] = float(np.median(times))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--templates", default="ensemble")
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 4, 10, 40])
    ap.add_argument("--orders", type=int, nargs="+", default=list(range(2000, 2010)))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    audio, labels, prompts, scale = teacher_view(args.model, args.root, args.templates)
    runs = methods(prompts, scale)
    rows = []
    for ratio in args.ratios:
        for order in args.orders:
            idx = pool(labels, ratio, order, fraction=1.0)
            a, y = audio[idx], labels[idx]
            row = {"ratio": ratio, "order": order, "n_clips": len(idx), "methods": {}}
            for name, f in runs.items():
                pred = f(a).argmax(axis=1)
                row["methods"][name] = {
                    "accuracy": float(np.mean(pred == y)),
                    "class_mean": class_mean(pred, y),
                }
            rows.append(row)
    load = os.getloadavg()
    result = {
        "model": args.model,
        "templates": args.templates,
        "orders": args.orders,
        "ratios": args.ratios,
        "rows": rows,
        "timing_2000x50_one_thread_s": timing(),
        "load_average": load,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transduction.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "transduction.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    names = list(result["rows"][0]["methods"])
    lines = [
        "# Transductive inference without training (teacher only)",
        "",
        f"Model `{result['model']}`, templates `{result['templates']}`, class orders "
        f"{result['orders'][0]}-{result['orders'][-1]} ({len(result['orders'])} per ratio), "
        "every clip of each variant labelled together; labels read only to score. Mean over "
        "orders of clip accuracy / class-mean accuracy (%), and the mean gain over the plain "
        "zero-shot ensemble (`none`) with its range over orders.",
        "",
        "| method | " + " | ".join(f"ratio {r:g}" for r in result["ratios"]) + " |",
        "|---|" + "---|" * len(result["ratios"]),
    ]
    for name in names:
        cells = []
        for r in result["ratios"]:
            rows = [x for x in result["rows"] if x["ratio"] == r]
            acc = np.array([x["methods"][name]["accuracy"] for x in rows])
            cm = np.array([x["methods"][name]["class_mean"] for x in rows])
            base = np.array([x["methods"]["none"]["accuracy"] for x in rows])
            gain = 100 * (acc - base)
            cells.append(
                f"{100 * acc.mean():.1f} / {100 * cm.mean():.1f} "
                f"({gain.mean():+.1f}, {gain.min():+.1f}..{gain.max():+.1f})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sizes = {
        r: int(np.mean([x["n_clips"] for x in result["rows"] if x["ratio"] == r]))
        for r in result["ratios"]
    }
    lines += [
        "",
        "Clips per variant: " + ", ".join(f"ratio {r:g}: {n}" for r, n in sizes.items()) + ".",
        "",
        "Time for 2,000 clips x 50 classes x 8 templates (D = 512), one thread, median of 5 "
        f"(load average {', '.join(f'{v:.1f}' for v in result['load_average'])}; "
        f"{result['machine']}):",
        "",
        "| method | seconds |",
        "|---|---|",
    ]
    lines += [f"| {m} | {t:.3f} |" for m, t in result["timing_2000x50_one_thread_s"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
