"""How well can a target pool's class shares be estimated without labels, and what do the
refined pseudo-labels gain from each estimate?

    python bench/bench_priors.py --root ../shared/data/esc50-subset --orders 100 101 102 103 104

For each imbalance ratio and class order (the long-tailed variants of ``make_skewed.py``), a
random 75 % of the variant's clips plays the unlabeled adaptation pool. Each estimator gives
class shares from the teacher's zero-shot probabilities of the pool alone; the pool's labels
are read afterwards, only to score: total variation distance to the pool's true shares, and the
precision and class coverage of the refined pseudo-labels (k-NN smoothing, Sinkhorn to the
estimated shares, surer half kept) that ``pseudo_refined`` would curate. ``oracle`` (the true
shares) bounds what a perfect estimate could give. Writes bench/results/priors.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from make_skewed import class_quota

RESULTS = Path(__file__).resolve().parent / "results"


def teacher_view(model_spec: str, root: str, templates: str):
    from claptune.data import load_dataset
    from claptune.embed import encode_audio
    from claptune.evaluate.zeroshot import resolve_templates, text_classifier
    from claptune.models import load_model

    model = load_model(model_spec).eval()
    ds = load_dataset("esc50", root=root)
    emb = encode_audio(model, [str(p) for p in ds.items], progress=True).embeddings
    cls = text_classifier(model, ds.class_names, resolve_templates(templates))
    return emb, np.asarray(ds.labels), cls, float(model.logit_scale.detach())


def pool(labels: np.ndarray, ratio: float, order: int, fraction: float = 0.75) -> np.ndarray:
    """Indices of the adaptation pool of one variant (classes ranked by ``order``)."""
    n_classes = int(labels.max()) + 1
    rng = np.random.default_rng(order)
    ranked = rng.permutation(n_classes)
    head = min(np.bincount(labels))
    keep: list[int] = []
    for c, q in zip(ranked, class_quota(n_classes, head, ratio), strict=True):
        members = np.flatnonzero(labels == c)
        keep += rng.permutation(members)[: min(q, len(members))].tolist()
    keep_arr = rng.permutation(np.array(keep))
    return np.sort(keep_arr[: int(round(fraction * len(keep_arr)))])


def estimators(probs: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    from claptune.curation.priors import em_prior

    c = probs.shape[1]
    return {
        "uniform": np.full(c, 1.0 / c),
        "argmax histogram": np.bincount(probs.argmax(1), minlength=c) / len(probs),
        "em (ML)": em_prior(probs, 0.0),
        "em (strength 1)": em_prior(probs, 1.0),
        "em (strength 10)": em_prior(probs, 10.0),
        "oracle (true shares)": true,
    }


def measure(emb, labels, cls, logit_scale, ratio, order) -> dict[str, dict[str, float]]:
    from claptune.curation.priors import sinkhorn, total_variation
    from claptune.curation.pseudo import knn_smooth

    idx = pool(labels, ratio, order)
    a, y = emb[idx], labels[idx]
    c = cls.shape[0]
    true = np.bincount(y, minlength=c) / len(y)
    logits = logit_scale * a.astype(np.float64) @ cls.astype(np.float64).T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pk = knn_smooth(p, a, 3, 0.5)
    out = {}
    for name, shares in estimators(pk, true).items():
        q = sinkhorn(pk, shares)
        pred, conf = q.argmax(1), q.max(1)
        kept = conf >= np.quantile(conf, 0.5)
        out[name] = {
            "tv": total_variation(shares, true),
            "precision_kept": float(np.mean(pred[kept] == y[kept])),
            "accuracy_all": float(np.mean(pred == y)),
            "classes_kept": int(len(np.unique(pred[kept]))),
            "n_pool": len(idx),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="ESC-50 layout")
    ap.add_argument("--model", default="default")
    ap.add_argument("--templates", default="ensemble")
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 10, 40])
    ap.add_argument("--orders", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    t0 = time.time()
    emb, labels, cls, scale = teacher_view(args.model, args.root, args.templates)
    rows = []
    for ratio in args.ratios:
        per = [measure(emb, labels, cls, scale, ratio, o) for o in args.orders]
        for name in per[0]:
            vals = {k: [p[name][k] for p in per] for k in per[0][name]}
            rows.append(
                {
                    "ratio": ratio,
                    "estimator": name,
                    "n_orders": len(per),
                    **{k: float(np.mean(v)) for k, v in vals.items()},
                    "tv_std": float(np.std([p[name]["tv"] for p in per])),
                }
            )
    result = {
        "command": "python bench/bench_priors.py " + " ".join(argv or []),
        "model": args.model,
        "orders": args.orders,
        "seconds": time.time() - t0,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "priors.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Model `{args.model}`, ESC-50 layout at the given root; class orders "
        f"{args.orders}; pool = random 75 % of each variant; means over orders.",
        "",
        "| ratio | estimator | TV to true shares | kept-label precision | all-label accuracy "
        "| classes among kept | pool clips |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ratio']:g} | {r['estimator']} | {r['tv']:.3f} ± {r['tv_std']:.3f} "
            f"| {100 * r['precision_kept']:.1f} % | {100 * r['accuracy_all']:.1f} % "
            f"| {r['classes_kept']:.1f} | {r['n_pool']:.0f} |"
        )
    (args.out / "priors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
