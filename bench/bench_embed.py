"""Embedding throughput: claptune.embed.encode_audio against the plain transformers loop.

    python bench/bench_embed.py [--repeats 2] [--limit N]

On the 414 ESC-50 clips of ../shared/data/esc50-subset (5 s, 44.1 kHz FLAC) with the tiny
random ClapModel of the tests (1 s windows at 48 kHz, so each clip is 5 windows), in one run:

- ``docs loop, same windows``: what a user writes from the transformers docs, one file at a
  time (soundfile + soxr to 48 kHz, ``ClapProcessor``, ``get_audio_features``), fed the same
  deterministic windows as claptune and averaged the same way, so the vectors must agree;
- ``docs loop, random crop``: the docs loop as printed, the whole clip to ``ClapProcessor``,
  which keeps one random 1 s crop (1/5 of the audio; vectors not comparable);
- ``claptune encode_audio``: threads decoding ahead, torch log-mel and batched windows.

Writes bench/results/embed.md and bench/results/embed.json. Other processes share the CPU, so
the methods take turns on blocks of ``--block`` clips (each method sees the same load), the
whole set is timed ``--repeats`` times, and every repeat is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from _tiny import tiny_model_dir
from claptune.audio import windows
from claptune.embed import encode_audio
from claptune.models.hf_clap import HFClapModel

ROOT = Path(__file__).resolve().parents[1]
ESC50_AUDIO = ROOT.parent / "shared" / "data" / "esc50-subset" / "audio"
RESULTS = ROOT / "bench" / "results"


def _load_48k(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, 48000)


def docs_loop(clap, processor, files: list[Path], same_windows: bool) -> np.ndarray:
    out = []
    for path in files:
        audio = _load_48k(path)
        clips = list(windows(audio, 48000, "repeatpad")) if same_windows else audio
        inputs = processor(audio=clips, sampling_rate=48000, return_tensors="pt")
        with torch.inference_mode():
            emb = clap.get_audio_features(**inputs).pooler_output
        out.append(torch.nn.functional.normalize(emb.mean(0), dim=0).numpy())
    return np.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--block", type=int, default=46, help="clips per interleaved block")
    parser.add_argument("--name", default="embed", help="results file stem in bench/results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import ClapModel, ClapProcessor

    files = sorted(ESC50_AUDIO.glob("*.flac"))[: args.limit]
    if not files:
        raise SystemExit(f"no clips in {ESC50_AUDIO}")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = tiny_model_dir(Path(tmp) / "tiny")
        clap = ClapModel.from_pretrained(model_dir).eval()
        processor = ClapProcessor.from_pretrained(model_dir)
        model = HFClapModel.load(model_dir)

    methods = {
        "docs loop, same windows": lambda fs: docs_loop(clap, processor, fs, True),
        "docs loop, random crop": lambda fs: docs_loop(clap, processor, fs, False),
        f"claptune encode_audio (batch {args.batch_size}, {args.num_workers} threads)": lambda fs: (
            encode_audio(
                model, fs, batch_size=args.batch_size, num_workers=args.num_workers, progress=False
            ).embeddings
        ),
        f"claptune encode_audio (batch {args.batch_size}, decode inline)": lambda fs: (
            encode_audio(
                model, fs, batch_size=args.batch_size, num_workers=0, progress=False
            ).embeddings
        ),
    }
    warm = files[:3]  # first calls pay one-off costs (allocations, lazy imports)
    for fn in methods.values():
        fn(warm)
    # The CPU is shared with other jobs whose load comes and goes: run the methods in turn on
    # blocks of clips (rotating who goes first) so that every method sees the same conditions.
    blocks = [files[i : i + args.block] for i in range(0, len(files), args.block)]
    runs: dict[str, list[float]] = {name: [] for name in methods}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    for _ in range(args.repeats):
        seconds = dict.fromkeys(methods, 0.0)
        outputs: dict[str, list[np.ndarray]] = {name: [] for name in methods}
        for b, block in enumerate(blocks):
            loads.append(os.getloadavg()[0])
            names = list(methods)
            for name in names[b % len(names) :] + names[: b % len(names)]:
                start = time.perf_counter()
                outputs[name].append(methods[name](block))
                seconds[name] += time.perf_counter() - start
        for name in methods:
            runs[name].append(len(files) / seconds[name])
            vectors[name] = np.concatenate(outputs[name])
    ours, baseline, crop = (list(methods)[i] for i in (2, 0, 1))
    result = {
        "clips": len(files),
        "windows_per_clip": len(windows(_load_48k(files[0]), 48000)),
        "repeats": args.repeats,
        "clips_per_s": runs,
        "ratio_vs_same_windows": [o / b for o, b in zip(runs[ours], runs[baseline], strict=True)],
        "ratio_vs_random_crop": [o / b for o, b in zip(runs[ours], runs[crop], strict=True)],
        "max_abs_diff_vs_same_windows": float(np.abs(vectors[ours] - vectors[baseline]).max()),
        "max_abs_diff_inline_vs_threads": float(
            np.abs(vectors[ours] - vectors[list(methods)[3]]).max()
        ),
        "block": args.block,
        "load_average_1min_at_blocks": loads,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "niceness": os.nice(0),
        "command": " ".join(["python", *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    lines = [
        "# Embedding throughput (tiny ClapModel, ESC-50 subset)",
        "",
        f"{r['clips']} clips of 5 s at 44.1 kHz; the tiny model's window is 1 s at 48 kHz, so "
        "every clip is 5 windows. Command: `" + r["command"] + "`. "
        f"{r['cpu_count']} CPU cores shared with other jobs"
        + (
            f" (this run at niceness {r['niceness']}, i.e. ahead of them)"
            if r["niceness"] < 0
            else ""
        )
        + f"; the methods take turns on blocks of "
        f"{r['block']} clips so that all see the same load (1-min load average at each block: "
        f"{', '.join(f'{x:.1f}' for x in r['load_average_1min_at_blocks'])}).",
        "",
        "| method | clips/s (each run) |",
        "|---|---|",
    ]
    for name, speeds in r["clips_per_s"].items():
        lines.append(f"| {name} | {', '.join(f'{s:.1f}' for s in speeds)} |")
    lines += [
        "",
        "Speed-up of claptune (threads) over the docs loop on the same windows: "
        + ", ".join(f"{x:.2f}x" for x in r["ratio_vs_same_windows"])
        + "; over the docs loop as printed (one random crop, 1/5 of the audio): "
        + ", ".join(f"{x:.2f}x" for x in r["ratio_vs_random_crop"])
        + ".",
        "",
        f"Max abs difference of the vectors, claptune vs the docs loop on the same windows: "
        f"{r['max_abs_diff_vs_same_windows']:.2e}; decode threads vs inline: "
        f"{r['max_abs_diff_inline_vs_threads']:.2e}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
