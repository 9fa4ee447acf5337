"""encode_audio on a GPU: clips/s by precision and batch size, and how far the vectors move.

    python bench/bench_gpu_embed.py [--clips 256] [--out DIR]

Run by scripts/gpu_check.sh on a lent GPU machine (no network there). Models: the embedded
default model, and a realistic-size random ClapModel (laion/clap-htsat-unfused's architecture,
as in bench/bench_fast_encode.py). Clips: ``--clips`` random 5 s waveforms at each model's rate
(no files, so the GPU, not the disk, is what is timed; decoding is measured on CPU by
bench_fast_encode.py). For each model, precision (float32, tf32, bf16) and batch size, the
median of 3 timed runs after one warm-up, and the max abs difference of the vectors from the
float32 ones. Writes <out>/gpu_embed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from claptune.embed import encode_audio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    from bench_fast_encode import realistic_hf
    from claptune.models import load_model

    models = {"default": load_model("default")}
    _, _, models["hf htsat-unfused size"] = realistic_hf(Path(tempfile.mkdtemp()))
    rows = []
    for name, model in models.items():
        model = model.to("cuda").eval()
        rng = np.random.default_rng(0)
        waves = [
            (0.1 * rng.standard_normal(5 * model.sample_rate)).astype(np.float32)
            for _ in range(args.clips)
        ]
        reference = None
        for precision in ("float32", "tf32", "bf16"):
            for batch in (32, 64, 128, 256):

                def run(model=model, waves=waves, batch=batch, precision=precision):
                    out = encode_audio(
                        model, waves, batch_size=batch, num_workers=0, progress=False,
                        precision=precision,
                    ).embeddings  # fmt: skip
                    torch.cuda.synchronize()
                    return out

                run()
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    emb = run()
                    times.append(time.perf_counter() - start)
                if reference is None:
                    reference = emb
                rows.append(
                    {
                        "model": name,
                        "precision": precision,
                        "batch": batch,
                        "clips_per_s": round(args.clips / float(np.median(times)), 1),
                        "max_abs_diff_vs_float32": float(np.abs(emb - reference).max()),
                        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    }
                )
                print(rows[-1], flush=True)
        model.to("cpu")
        torch.cuda.empty_cache()
    result = {"device": torch.cuda.get_device_name(), "clips": args.clips, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_embed.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{result['device']}, {args.clips} clips of 5 s\n")
    print("| model | precision | batch | clips/s | max abs diff vs float32 | peak GiB |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['precision']} | {r['batch']} | {r['clips_per_s']} | "
            f"{r['max_abs_diff_vs_float32']:.1e} | {r['peak_gib']} |"
        )


if __name__ == "__main__":
    main()
