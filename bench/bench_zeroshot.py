"""Zero-shot accuracy on the ESC-50 subset of ../shared/data, and how repeatable it is.

    python bench/bench_zeroshot.py [--models default tiny] [--root ../shared/data/esc50-subset]

For each model: the 414 clips are embedded once (claptune.embed.encode_audio, every 5 s clip
as the mean over its windows) and classified with the paper's single prompt ("this is a sound
of {}") and with the 8-template ensemble. Repeatability: the clips are embedded a second time
in another order, with another batch size and without decoding threads; the report gives the
largest difference between the two sets of vectors and whether every prediction is the same.
``tiny`` is the random ClapModel of the tests (chance level, a check of the machinery only).

Writes bench/results/zeroshot.md and bench/results/zeroshot.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _tiny import tiny_model_dir
from claptune.data import load_dataset
from claptune.embed import encode_audio
from claptune.evaluate.zeroshot import (
    DEFAULT_TEMPLATES,
    ENSEMBLE_TEMPLATES,
    evaluate_zeroshot,
)
from claptune.models import load_model

ROOT = Path(__file__).resolve().parents[1]
ESC50 = ROOT.parent / "shared" / "data" / "esc50-subset"
RESULTS = ROOT / "bench" / "results"


def bench_model(spec: str, model, dataset) -> dict:
    items = [str(p) for p in dataset.items]
    t0 = time.perf_counter()
    first = encode_audio(model, items, progress=False)
    embed_s = time.perf_counter() - t0
    row = {
        "model": spec,
        "n_clips": len(items),
        "n_classes": len(dataset.class_names),
        "chance": 1.0 / len(dataset.class_names),
        "embed_seconds": embed_s,
        "clips_per_second": len(items) / embed_s,
    }
    for name, templates in (("default", DEFAULT_TEMPLATES), ("ensemble", ENSEMBLE_TEMPLATES)):
        result = evaluate_zeroshot(
            model, dataset, templates=templates, audio_emb=first.embeddings, progress=False
        )
        row[f"accuracy_{name}"] = result.accuracy
        row[f"predictions_{name}"] = result.predictions
    # the same clips again, in reverse order, another batch size, decoded in the main thread
    order = np.arange(len(items))[::-1]
    second = encode_audio(
        model, [items[i] for i in order], batch_size=7, num_workers=0, progress=False
    )
    again = np.empty_like(second.embeddings)
    again[order] = second.embeddings
    rerun = evaluate_zeroshot(model, dataset, audio_emb=again, progress=False)
    row["max_abs_diff_rerun"] = float(np.abs(again - first.embeddings).max())
    row["same_predictions_rerun"] = bool((rerun.predictions == row["predictions_default"]).all())
    for name in ("default", "ensemble"):
        row.pop(f"predictions_{name}")
    return row


def write_report(rows: list[dict], meta: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "zeroshot.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Zero-shot accuracy on ../shared/data/esc50-subset",
        "",
        f"{meta['n_clips']} clips, {meta['n_classes']} classes (chance {1 / meta['n_classes']:.1%}).",
        "",
        "| model | accuracy, 'this is a sound of {}' | accuracy, 8-template ensemble | "
        "embedding clips/s | rerun: max abs diff | rerun: same predictions | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['accuracy_default']:.1%} | {r['accuracy_ensemble']:.1%} | "
            f"{r['clips_per_second']:.1f} | {r['max_abs_diff_rerun']:.1e} | "
            f"{'yes' if r['same_predictions_rerun'] else 'NO'} | "
            f"{r['date']}, {r['machine']}, `{r['command']}` |"
        )
    lines += [
        "",
        "The rerun embeds the clips in reverse order with batch size 7 and no decoding "
        "threads: a clip's vector does not depend on what shares its batch (differences are "
        "float32 rounding at most). `tiny` is a random model: its accuracy only shows "
        "the machinery, not a result.",
        "",
    ]
    (RESULTS / "zeroshot.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default", "tiny"])
    parser.add_argument("--root", type=Path, default=ESC50)
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = load_dataset("esc50", root=args.root)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.models:
            model = load_model(tiny_model_dir(Path(tmp) / "tiny") if spec == "tiny" else spec)
            rows.append(bench_model(spec, model, dataset))
            print(json.dumps(rows[-1]))
    stamp = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} CPU, torch {torch.__version__}, 2 threads",
        "command": f"python bench/bench_zeroshot.py --models {' '.join(args.models)}",
    }
    for row in rows:
        row.update(stamp)
    meta = {"n_clips": len(dataset), "n_classes": len(dataset.class_names)}
    write_report(merge_rows(rows), meta)


def merge_rows(rows: list[dict]) -> list[dict]:
    """Earlier results of other models are kept; a model measured again replaces its row."""
    path = RESULTS / "zeroshot.json"
    old = json.loads(path.read_text())["rows"] if path.is_file() else []
    fresh = {r["model"] for r in rows}
    return [r for r in old if r["model"] not in fresh and "command" in r] + rows


if __name__ == "__main__":
    main()
