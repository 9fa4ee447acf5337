"""The labels ``claptune adapt`` writes for a user's unlabeled clips, against the label-free
peers computed on the same clips.

    python bench/bench_adapt_labels.py --root ../shared/data/esc50-subset \
        --data runs/adapt-data --work runs/adapt-labels --variants r10-o3000 r10-o3001

Each variant (``make_skewed.named_variant``, ``r<ratio>-o<order>``) is handed to ``claptune
adapt`` as a folder of clips and the ESC-50 class list, with the defaults (no label anywhere in
its input). Its ``predictions.csv`` (with ``--labels-from saved``: the adapted model's scores refined by
transduction, where the guard kept the student) is then scored against the variant's labels,
beside what the teacher alone gives on the same clips (``teacher + claptune`` is what adapt
writes by default): the plain zero-shot ensemble and every transduction
of ``claptune.evaluate.transductive`` (entropy prompt weighting, Sinkhorn, label propagation,
TransCLIP's Gaussian EM, and claptune's chain), each over all the clips together, as a user
without claptune's training would compute them. Writes bench/results/adapt_labels.json and .md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from make_skewed import named_variant

RESULTS = Path(__file__).resolve().parent / "results"


def variant_labels(path: Path) -> tuple[list[str], dict[str, str]]:
    """(the variant's class names, file name -> class) from its meta/esc50.csv."""
    with (path / "meta" / "esc50.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_name = {Path(r["filename"]).stem: r["category"] for r in rows}
    return sorted({r["category"] for r in rows}), by_name


def run_adapt(variant: Path, classes: list[str], out: Path) -> float:
    if (out / "predictions.csv").is_file():
        return 0.0
    from claptune.cli import main

    (out.parent / f"{out.name}-classes.txt").write_text("\n".join(classes) + "\n")
    t0 = time.perf_counter()
    argv = ["adapt", "--audio", str(variant / "audio"), "--classes"]
    argv += [str(out.parent / f"{out.name}-classes.txt"), "--out", str(out), "--quiet"]
    # the saved model's labels: the student's scores with transduction where the guard kept it
    # (adapt's default labels are the teacher's with transduction, the last column)
    argv += ["--labels-from", "saved"]
    if main(argv) != 0:
        raise SystemExit(f"adapt failed on {variant}")
    return time.perf_counter() - t0


def peers(items: list[str], classes: list[str]) -> dict[str, np.ndarray]:
    """(N,) class index of every clip by the teacher with each transduction over all clips."""
    from claptune.evaluate.transductive import TRANSDUCTIONS, transduce
    from claptune.evaluate.zeroshot import prompt_embeddings, resolve_templates
    from claptune.features import FeatureStore
    from claptune.improve.config import default_cache_dir
    from claptune.models import load_model

    model = load_model("default").eval()
    store = FeatureStore(model, cache_dir=default_cache_dir(), progress=False)
    store.add_clips(items, "raise", "variant audio")
    audio = store.embed_audio(model, items)
    prompts = prompt_embeddings(model, classes, resolve_templates(("ensemble",)))
    scale = float(model.logit_scale.detach())
    return {m: transduce(audio, prompts, scale, m).argmax(axis=1) for m in TRANSDUCTIONS}


def score(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from claptune.evaluate.metrics import accuracy, class_mean_accuracy

    return {"accuracy": accuracy(pred, labels), "class_mean": class_mean_accuracy(pred, labels)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        variant = Path(named_variant(args.root, args.data, name)["path"])
        classes, truth = variant_labels(variant)
        out = args.work / name
        seconds = run_adapt(variant, classes, out)
        with (out / "predictions.csv").open(newline="", encoding="utf-8") as fh:
            predicted = list(csv.DictReader(fh))
        items = [r["path"] for r in predicted]
        index = {c: k for k, c in enumerate(classes)}
        labels = np.array([index[truth[Path(p).stem]] for p in items])
        report = json.loads((out / "report.json").read_text())
        row = {
            "variant": name,
            "n_clips": len(items),
            "seconds": seconds,
            "saved": report.get("saved"),
            "guard": report.get("guard"),
            "scores": {
                "adapt --labels-from saved": score(
                    np.array([index[r["label"]] for r in predicted]), labels
                )
            },
        }
        for method, pred in peers(items, classes).items():
            row["scores"][f"teacher + {method}" if method != "none" else "teacher"] = score(
                pred, labels
            )
        rows.append(row)
        print(f"{name}: done", file=sys.stderr)
    result = {
        "variants": args.variants,
        "rows": rows,
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adapt_labels.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "adapt_labels.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    names = list(result["rows"][0]["scores"])
    lines = [
        "# adapt's labels against the label-free peers on the same clips",
        "",
        "`claptune adapt --labels-from saved` on each unlabeled variant (the student + transduction where the guard kept it) and "
        "the teacher's label-free pipelines over the same clips, scored afterwards: clip "
        "accuracy / class-mean accuracy in percent.",
        "",
        "| variant | clips | saved | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for row in result["rows"]:
        cells = [
            f"{100 * row['scores'][n]['accuracy']:.1f} / {100 * row['scores'][n]['class_mean']:.1f}"
            for n in names
        ]
        lines.append(
            f"| {row['variant']} | {row['n_clips']} | {row['saved']} | " + " | ".join(cells) + " |"
        )
    mean = {
        n: (
            np.mean([r["scores"][n]["accuracy"] for r in result["rows"]]),
            np.mean([r["scores"][n]["class_mean"] for r in result["rows"]]),
        )
        for n in names
    }
    lines.append(
        "| mean | | | "
        + " | ".join(f"{100 * a:.1f} / {100 * c:.1f}" for a, c in mean.values())
        + " |"
    )
    lines += [
        "",
        f"Machine: {result['machine']}; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in result['load_average'])}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
