"""End-to-end ``encode_audio`` against the bare forward of its own network made fast by hand,
and against the batched transformers loop on a realistic-size Hugging Face CLAP.

    python bench/bench_fast_encode.py --part default [--clips 32] [--repeats 2]
    python bench/bench_fast_encode.py --part hf [--clips 16] [--repeats 2]
    python bench/bench_fast_encode.py --part chunks --model default|hf [--sizes 4,8,16,32,64]

``default``: the embedded default model on the first ``--clips`` ESC-50 clips (5 s, 44.1 kHz
FLAC; 3 windows of 2.3 s each), three methods taking turns on blocks of ``--block`` clips
(the order rotates per block, so all see the same load):

- ``encode_audio, as before``: BatchNorm as written, NCHW, 32 windows per forward (the code
  before the fold; switched back by ``fold.ENABLED`` and the model's chunk table);
- ``encode_audio``: files in, vectors out, decoding in threads (the shipped path);
- ``bare forward by hand``: the windows decoded before the clock starts, then only the
  network: log-mel, the CNN with BatchNorm folded into its convolutions by this script,
  ``channels_last``, 16 windows per forward (the size measured best by ``--part chunks``), the heads and the mean over windows. No files, no
  threads, no bookkeeping: the limit ``encode_audio`` is held against (target >= 0.9x).

``hf``: a ``transformers.ClapModel`` with the architecture of laion/clap-htsat-unfused (the
ClapAudioConfig defaults: HTSAT, 4 stages of depth 2/2/6/2, hidden 768, 10 s windows at
48 kHz, 64 mel bins), random weights, built from a ClapConfig (no download; the text tower is
one layer, since only audio is timed). Methods:

- ``transformers loop, batch B``: what a user writes: read each file (soundfile), resample to
  48 kHz (soxr), ``ClapProcessor`` on B clips, ``get_audio_features``, under inference_mode;
- ``encode_audio``: the shipped path (target >= 1.3x the loop).

``chunks``: the windows per forward that each model's CPU chunk table ships (the default
model's ``CHUNK_WINDOWS``, the HF backend's), measured: ``model.audio_features`` on the same
windows at each size in turn, with minor page faults per window.

Every row records the 1-min load average at each block and the core count; the vectors of
the methods are compared. Results: bench/results/fast_encode-<part>.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from claptune.audio import load_audio, windows
from claptune.embed import encode_audio

ROOT = Path(__file__).resolve().parents[1]
ESC50_AUDIO = ROOT.parent / "shared" / "data" / "esc50-subset" / "audio"
RESULTS = ROOT / "bench" / "results"


# -- the default model ------------------------------------------------------------------------
def _folded(conv, bn):
    scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
    weight = (conv.weight.double() * scale[:, None, None, None]).float()
    bias = (bn.bias.double() - bn.running_mean.double() * scale).float()
    return weight.contiguous(memory_format=torch.channels_last), bias


def bare_default(model) -> Callable[[list[np.ndarray]], np.ndarray]:
    """The default model's network, folded and channels_last by hand, on decoded windows."""
    enc = model.audio_encoder
    blocks = [enc.net.conv_block1, enc.net.conv_block2, enc.net.conv_block3, enc.net.conv_block4]
    weights = [(_folded(b.conv1, b.bn1), _folded(b.conv2, b.bn2)) for b in blocks]
    pools = [(2, 2), (2, 2), (2, 2), None]

    def features(waves: torch.Tensor) -> torch.Tensor:
        x = enc.log_mel(waves).unsqueeze(1).contiguous(memory_format=torch.channels_last)
        for ((w1, b1), (w2, b2)), pool in zip(weights, pools, strict=True):
            x = F.relu_(F.conv2d(x, w1, b1, padding=1))
            x = F.relu_(F.conv2d(x, w2, b2, padding=1))
            if pool:
                x = F.max_pool2d(x, pool)
        x = x.mean(dim=3)
        return torch.cat([x.amax(dim=2), x.mean(dim=2)], dim=1)

    def run(clip_windows: list[np.ndarray]) -> np.ndarray:
        owner = np.repeat(np.arange(len(clip_windows)), [len(w) for w in clip_windows])
        waves = torch.from_numpy(np.concatenate(clip_windows))
        with torch.inference_mode():
            emb = torch.cat([model.audio_head(features(part)) for part in waves.split(16)])
            sums = torch.zeros(len(clip_windows), emb.shape[1], dtype=torch.float64)
            sums.index_add_(0, torch.from_numpy(owner), emb.double())
            return F.normalize(sums, dim=-1).float().numpy()

    return run


def as_before(model, fn: Callable) -> Callable:
    """Run ``fn`` with the code's earlier path: BatchNorm as written, NCHW, no chunks."""
    from claptune.models import default, fold

    def run(*args, **kwargs):
        chunks = dict(default.CHUNK_WINDOWS)
        fold.ENABLED, model.audio_encoder.net.channels_last = False, False
        default.CHUNK_WINDOWS.clear()
        try:
            return fn(*args, **kwargs)
        finally:
            fold.ENABLED, model.audio_encoder.net.channels_last = True, True
            default.CHUNK_WINDOWS.update(chunks)

    return run


def default_methods(args, files):
    from claptune.models import load_model

    model = load_model("default").eval()
    decoded = {f: windows(load_audio(f, model.sample_rate), model.clip_samples) for f in files}
    bare = bare_default(model)
    methods = {
        "encode_audio, as before (BatchNorm as written, NCHW, 32 windows a forward)": as_before(
            model,
            lambda fs: encode_audio(model, fs, batch_size=32, progress=False).embeddings,
        ),
        "encode_audio (folded, channels_last, 16-window chunks; 2 decode threads)": lambda fs: (
            encode_audio(model, fs, progress=False).embeddings
        ),
        "bare forward by hand (decoded windows, folded, channels_last, 16 a forward)": lambda fs: (
            bare([decoded[f] for f in fs])
        ),
    }
    return methods, "encode_audio (folded", "bare forward", "encode_audio, as before"


# -- a realistic-size Hugging Face CLAP -----------------------------------------------------------
def realistic_hf(tmp: Path):
    """laion/clap-htsat-unfused's architecture with random weights, and a matching processor."""
    sys.path.insert(0, str(ROOT / "tests"))
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        ClapTextConfig,
    )

    from claptune.models.hf_clap import HFClapModel
    from conftest import _save_tiny_processor

    torch.manual_seed(0)
    config = ClapConfig(
        audio_config=ClapAudioConfig(enable_fusion=False).to_dict(),
        text_config=ClapTextConfig(num_hidden_layers=1).to_dict(),
    )
    clap = ClapModel(config).eval()
    _save_tiny_processor(tmp)  # an offline tokenizer; the audio side is what is timed
    extractor = ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=48000,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        truncation="rand_trunc",
        padding="repeatpad",
    )  # laion/clap-htsat-unfused's preprocessor_config.json
    processor = ClapProcessor(
        feature_extractor=extractor, tokenizer=ClapProcessor.from_pretrained(tmp).tokenizer
    )
    # claptune wraps a copy: the loop must run transformers' own modules, untouched
    return clap, processor, HFClapModel(copy.deepcopy(clap), processor).eval()


def transformers_loop(clap, processor, batch: int) -> Callable:
    import soundfile as sf
    import soxr

    def run(files: list[Path]) -> np.ndarray:
        out = []
        for s in range(0, len(files), batch):
            clips = []
            for path in files[s : s + batch]:
                audio, rate = sf.read(path, dtype="float32")
                clips.append(
                    soxr.resample(audio.mean(axis=1) if audio.ndim == 2 else audio, rate, 48000)
                )
            inputs = processor(audio=clips, sampling_rate=48000, return_tensors="pt")
            with torch.inference_mode():
                emb = clap.get_audio_features(**inputs).pooler_output
            out.append(F.normalize(emb, dim=-1).numpy())
        return np.concatenate(out)

    return run


def hf_methods(args, files):
    tmp = Path(tempfile.mkdtemp())
    clap, processor, model = realistic_hf(tmp)
    loop = f"transformers loop, batch {args.user_batch}"
    methods = {
        loop: transformers_loop(clap, processor, args.user_batch),
        "encode_audio (2 decode threads)": lambda fs: (
            encode_audio(model, fs, progress=False).embeddings
        ),
    }
    return methods, "encode_audio", loop, None


# -- windows per forward ----------------------------------------------------------------------------
def chunk_sweep(args) -> None:
    """model.audio_features on the same decoded windows with the model's chunk table set to
    each size in turn (interleaved, rotating order), with minor page faults per window."""
    import resource

    from claptune.models import default, hf_clap, load_model

    if args.model == "default":
        model, table = load_model("default").eval(), default.CHUNK_WINDOWS
    else:
        model, table = realistic_hf(Path(tempfile.mkdtemp()))[2], hf_clap.CHUNK_WINDOWS
    shipped = table["cpu"]
    n = args.clips or 48
    waves = torch.from_numpy(
        (0.1 * np.random.default_rng(0).standard_normal((n, model.clip_samples))).astype(np.float32)
    )
    sizes = [int(x) for x in args.sizes.split(",")]
    per_window: dict[int, list[float]] = {c: [] for c in sizes}
    faults: dict[int, list[float]] = {c: [] for c in sizes}
    loads = []
    with torch.inference_mode():
        for c in sizes:  # warm-up
            table["cpu"] = c
            model.audio_features(waves[: 2 * c])
        for r in range(args.repeats):
            loads.append(round(os.getloadavg()[0], 2))
            for c in sizes[r % len(sizes) :] + sizes[: r % len(sizes)]:
                table["cpu"] = c
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                model.audio_features(waves)
                per_window[c].append(1000 * (time.perf_counter() - start) / n)
                faults[c].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n)
    table["cpu"] = shipped
    result = {
        "model": args.model,
        "windows": n,
        "repeats": args.repeats,
        "ms_per_window_median": {str(c): float(np.median(v)) for c, v in per_window.items()},
        "ms_per_window_runs": {str(c): v for c, v in per_window.items()},
        "minor_faults_per_window_median": {str(c): float(np.median(v)) for c, v in faults.items()},
        "shipped": shipped,
        "load_average_1min_at_repeats": loads,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(["python", *sys.argv]),
    }
    name = f"fast_encode-chunks-{args.model}"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"# Windows per forward on CPU: {args.model} model",
        "",
        f"`model.audio_features` on the same {n} random windows, the model's CPU chunk size set "
        f"to each value in turn ({args.repeats} rounds, rotating order). Command: "
        f"`{result['command']}`. {result['cpu_count']} cores shared with other jobs, "
        f"{result['torch_threads']} torch threads; 1-min load average at each round: "
        + ", ".join(f"{x:.1f}" for x in loads)
        + f". Shipped: {shipped}.",
        "",
        "| windows per forward | ms per window (median) | minor page faults per window (median) |",
        "|---:|---:|---:|",
    ]
    for c in sizes:
        lines.append(
            f"| {c} | {result['ms_per_window_median'][str(c)]:.0f} | "
            f"{result['minor_faults_per_window_median'][str(c)]:.0f} |"
        )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# -- the interleaved runs -------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("default", "hf", "chunks"), required=True)
    parser.add_argument("--model", choices=("default", "hf"), default="default", help="chunks")
    parser.add_argument("--sizes", default="4,8,16,32,64", help="chunks: windows per forward")
    parser.add_argument("--clips", type=int, default=None, help="default: 32 (default), 16 (hf)")
    parser.add_argument("--block", type=int, default=8, help="clips per interleaved block")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--user-batch", type=int, default=16, help="the transformers loop's")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part == "chunks":
        chunk_sweep(args)
        return
    n = args.clips or (32 if args.part == "default" else 16)
    files = sorted(ESC50_AUDIO.glob("*.flac"))[:n]
    if not files:
        raise SystemExit(f"no clips in {ESC50_AUDIO}")
    build = default_methods if args.part == "default" else hf_methods
    methods, ours_prefix, limit_prefix, before_prefix = build(args, files)
    ours = next(m for m in methods if m.startswith(ours_prefix))
    limit = next(m for m in methods if m.startswith(limit_prefix))
    before = next((m for m in methods if before_prefix and m.startswith(before_prefix)), None)
    for fn in methods.values():  # one-off costs (allocations, lazy imports, folding)
        fn(files[:2])

    blocks = [files[i : i + args.block] for i in range(0, len(files), args.block)]
    block_seconds: dict[str, list[float]] = {m: [] for m in methods}
    loads, vectors = [], {}
    for _ in range(args.repeats):
        outputs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        for b, block in enumerate(blocks):
            loads.append(round(os.getloadavg()[0], 2))
            names = list(methods)
            for name in names[b % len(names) :] + names[: b % len(names)]:
                start = time.perf_counter()
                outputs[name].append(methods[name](block))
                block_seconds[name].append(time.perf_counter() - start)
        vectors = {m: np.concatenate(v) for m, v in outputs.items()}

    def clips_per_s(name: str) -> list[float]:
        return [
            len(blk) / s for blk, s in zip(blocks * args.repeats, block_seconds[name], strict=True)
        ]

    def paired(a: str, b: str) -> list[float]:  # per block: a's speed over b's, same load
        return [sb / sa for sa, sb in zip(block_seconds[a], block_seconds[b], strict=True)]

    result = {
        "part": args.part,
        "clips": len(files),
        "block": args.block,
        "repeats": args.repeats,
        "clips_per_s_median": {m: float(np.median(clips_per_s(m))) for m in methods},
        "clips_per_s_blocks": {m: clips_per_s(m) for m in methods},
        "ours": ours,
        "reference": limit,
        "ratio_vs_reference_median": float(np.median(paired(ours, limit))),
        "ratio_vs_reference_blocks": paired(ours, limit),
        "max_abs_diff": {
            m: float(np.abs(vectors[m] - vectors[limit]).max()) for m in methods if m != limit
        },
        "load_average_1min_at_blocks": loads,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "command": " ".join(["python", *sys.argv]),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if before is not None:
        result["before"] = before
        result["ratio_vs_before_median"] = float(np.median(paired(ours, before)))
        result["before_vs_reference_median"] = float(np.median(paired(before, limit)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"fast_encode-{args.part}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"fast_encode-{args.part}.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    what = (
        "the embedded default model"
        if r["part"] == "default"
        else "a realistic-size random ClapModel (laion/clap-htsat-unfused architecture)"
    )
    lines = [
        f"# encode_audio at the hardware's limit: {what}",
        "",
        f"{r['clips']} ESC-50 clips (5 s, 44.1 kHz FLAC), {r['repeats']} repeats, methods taking "
        f"turns on blocks of {r['block']} clips. Command: `{r['command']}`. {r['cpu_count']} CPU "
        f"cores shared with other jobs, torch {r['torch']} with {r['torch_threads']} threads; "
        "1-min load average at each block: "
        + ", ".join(f"{x:.1f}" for x in r["load_average_1min_at_blocks"])
        + ".",
        "",
        "| method | clips/s (median of blocks) | max abs diff of the vectors vs the reference |",
        "|---|---|---|",
    ]
    for name, speed in r["clips_per_s_median"].items():
        diff = r["max_abs_diff"].get(name)
        lines.append(f"| {name} | {speed:.2f} | {'reference' if diff is None else f'{diff:.1e}'} |")
    lines += [
        "",
        f"**{r['ours']}** over **{r['reference']}**: {r['ratio_vs_reference_median']:.2f}x "
        "(median of the per-block ratios, each block timed back to back under the same load; "
        "blocks: " + ", ".join(f"{x:.2f}" for x in r["ratio_vs_reference_blocks"]) + ").",
    ]
    if "before" in r:
        lines += [
            "",
            f"Over the path before this change: {r['ratio_vs_before_median']:.2f}x; the path "
            f"before reached {r['before_vs_reference_median']:.2f}x of the bare forward.",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
