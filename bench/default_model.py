"""Seed study of the default model's recipe: retrain the heads from scratch for several seeds
and report held-out captioned-sfx retrieval and ESC-50-subset zero-shot accuracy.

    python bench/default_model.py                       # recipe default.json, seeds 0 1 2
    python bench/default_model.py --seeds 0 1 2 --recipe my.json --shipped

ESC-50 is only scored here, never used to train or select anything (the recipe selects its
epoch by held-out captioned-sfx retrieval). Frozen aisfx features of the corpus and of ESC-50
are kept in the feature store (.claptune-cache/features), so reruns cost only the head training. ``--shipped``
also scores the heads shipped in claptune/weights/default. Writes
bench/results/default_model.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def esc50_zeroshot(model, dataset, cache_dir: Path) -> dict[str, float]:
    """Zero-shot top-1 with the single paper prompt and with the 8-template ensemble."""
    from claptune.evaluate.zeroshot import predict, text_classifier
    from claptune.features import FeatureStore

    store = FeatureStore(model, cache_dir=cache_dir, batch_size=32)
    feats = store.clip_windows(dataset.items, max_windows=8)
    with torch.no_grad():
        audio_emb = np.stack(
            [F.normalize(model.audio_head(f).mean(0), dim=0).numpy() for f in feats]
        )
    out = {}
    for name in ("default", "ensemble"):
        classifier = text_classifier(model, dataset.class_names, templates=name)
        out[name] = float((predict(audio_emb, classifier) == dataset.labels).mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default="default.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--corpus", type=Path, default=SHARED / "captioned-sfx")
    parser.add_argument("--esc50", type=Path, default=SHARED / "esc50-subset")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-default-model")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".claptune-cache")
    parser.add_argument("--shipped", action="store_true", help="also score the shipped heads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "default_model")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from claptune.data import load_dataset
    from claptune.models import load_model
    from claptune.train.heads import PretrainConfig, pretrain

    dataset = load_dataset("esc50", root=args.esc50)
    rows = []
    for seed in args.seeds:
        config = PretrainConfig.from_recipe(args.recipe, seed=seed)
        start = time.time()
        result = pretrain(
            args.corpus,
            args.runs / f"seed{seed}",
            config,
            cache_dir=args.cache_dir,
            log=lambda msg, s=seed: print(f"[seed {s}] {msg}", flush=True),
        )
        model = load_model(result.out_dir)
        zs = esc50_zeroshot(model, dataset, args.cache_dir)
        rows.append(
            {
                "seed": seed,
                "best_epoch": result.best_epoch,
                "heldout_mean_R": result.heldout["mean_R"],
                "heldout_a2t_R@1": result.heldout["a2t_R@1"],
                "heldout_t2a_R@1": result.heldout["t2a_R@1"],
                "esc50_single": zs["default"],
                "esc50_ensemble": zs["ensemble"],
                "seconds": round(time.time() - start, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    keys = [
        "heldout_mean_R",
        "heldout_a2t_R@1",
        "heldout_t2a_R@1",
        "esc50_single",
        "esc50_ensemble",
    ]
    summary = {
        k: {
            "mean": float(np.mean([r[k] for r in rows])),
            "std": float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0,
        }
        for k in keys
    }
    shipped = None
    if args.shipped:
        model = load_model("default")
        shipped = {
            "esc50": esc50_zeroshot(model, dataset, args.cache_dir),
            "heldout": model.metadata.get("heldout_retrieval"),
            "seed": model.metadata.get("recipe", {}).get("seed"),
        }
    report = {
        "recipe": PretrainConfig.from_recipe(args.recipe).to_dict(),
        "runs": rows,
        "summary": summary,
        "shipped": shipped,
        "n_esc50_clips": len(dataset.items),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared), torch "
        f"{torch.__version__}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Default model: recipe rerun from scratch, per seed",
        "",
        f"Recipe `{args.recipe}`; `python bench/default_model.py --seeds "
        f"{' '.join(map(str, args.seeds))}{' --shipped' if args.shipped else ''}`. "
        f"Held-out: the recipe's fixed captioned-sfx split (selection signal). ESC-50 subset: "
        f"{len(dataset.items)} clips, 50 classes, zero-shot top-1, scored only.",
        "",
        "| seed | epoch kept | held-out mean R | held-out a2t R@1 | held-out t2a R@1 | "
        "ESC-50 single prompt | ESC-50 8-prompt ensemble | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['best_epoch']} | {r['heldout_mean_R']:.3f} | "
            f"{r['heldout_a2t_R@1']:.3f} | {r['heldout_t2a_R@1']:.3f} | "
            f"{100 * r['esc50_single']:.1f} % | {100 * r['esc50_ensemble']:.1f} % | "
            f"{r['seconds']:.0f} |"
        )
    s = summary
    lines.append(
        f"| **mean ± sd** | | {s['heldout_mean_R']['mean']:.3f} ± "
        f"{s['heldout_mean_R']['std']:.3f} | {s['heldout_a2t_R@1']['mean']:.3f} | "
        f"{s['heldout_t2a_R@1']['mean']:.3f} | **{100 * s['esc50_single']['mean']:.1f} ± "
        f"{100 * s['esc50_single']['std']:.1f} %** | **"
        f"{100 * s['esc50_ensemble']['mean']:.1f} ± "
        f"{100 * s['esc50_ensemble']['std']:.1f} %** | |"
    )
    if shipped:
        lines += [
            "",
            f"Shipped heads (seed {shipped['seed']}): ESC-50 single prompt "
            f"{100 * shipped['esc50']['default']:.1f} %, ensemble "
            f"{100 * shipped['esc50']['ensemble']:.1f} %.",
        ]
    lines += ["", f"Machine: {report['machine']}.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
