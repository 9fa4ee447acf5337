"""Peak memory of embedding long recordings: streamed decoding against the model's footprint.

    python bench/bench_long_audio.py [--hours 1 8] [--embed-hours 1] [--model default]

Generates one recording per length at 8 kHz (mono FLAC, noise with a moving tone, written block
by block to a temporary folder, never kept), then measures each step in a fresh Python process
(its own peak RSS, ``VmHWM``, so nothing measured earlier counts):

- ``model``: load the model and embed one 5 s clip: the model's own footprint;
- ``stream``: ``claptune.audio.stream_windows(stream_audio(...))`` over the whole file at the
  model's rate (decode + resample + windows, what ``encode_audio`` does for a long file), no
  model;
- ``whole``: the old whole-file path, ``windows(load_audio(...))`` (only for ``--whole-hours``);
- ``embed``: ``claptune.embed.encode_audio(model, [file])`` end to end (``--embed-hours``).

It also embeds a 10-minute file both ways (streamed, and decoded whole) and reports the
largest difference between the two vectors. Writes bench/results/long_audio.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FILE_RATE = 8000

CHILD = r"""
import json, sys, time
import numpy as np
step, path, model_name = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
out = {}
if step in ("info", "model", "embed", "equal"):
    from claptune.models import load_model
    model = load_model(model_name)
if step == "info":
    out["rate"], out["clip"] = model.sample_rate, model.clip_samples
elif step == "model":
    from claptune.embed import encode_audio
    clip = np.random.default_rng(0).normal(0, 0.1, 5 * model.sample_rate).astype(np.float32)
    encode_audio(model, [clip], progress=False)
elif step == "stream":
    from claptune.audio import stream_audio, stream_windows
    rate, clip = int(sys.argv[4]), int(sys.argv[5])
    out["windows"] = sum(len(c) for c in stream_windows(stream_audio(path, rate), clip))
elif step == "whole":
    from claptune.audio import load_audio, windows
    rate, clip = int(sys.argv[4]), int(sys.argv[5])
    out["windows"] = len(windows(load_audio(path, rate), clip))
elif step == "embed":
    from claptune.embed import encode_audio
    out["dim"] = encode_audio(model, [path], progress=False).embeddings.shape[1]
elif step == "equal":
    import claptune.embed.encode as embed
    streamed = embed.encode_audio(model, [path], progress=False).embeddings
    embed.STREAM_SAMPLES = 1 << 62  # decode whole, as before streaming
    whole = embed.encode_audio(model, [path], progress=False).embeddings
    out["max_abs_diff"] = float(np.abs(streamed - whole).max())
out["seconds"] = time.perf_counter() - t0
# VmHWM: this process's own peak RSS. (getrusage's ru_maxrss would also count the parent's
# peak at the time of the fork, which Linux carries across exec.)
with open("/proc/self/status") as f:
    out["peak_rss_mb"] = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
print(json.dumps(out))
"""


def write_recording(path: Path, hours: float) -> None:
    """Noise plus a slowly gliding tone, written in one-minute blocks (bounded memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    n_total, block = int(hours * 3600 * FILE_RATE), 60 * FILE_RATE
    with sf.SoundFile(str(path), "w", FILE_RATE, 1, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, n_total, block):
            t = np.arange(start, min(start + block, n_total)) / FILE_RATE
            freq = 300 + 200 * np.sin(2 * np.pi * t / 600)
            f.write(0.2 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape))


def run(step: str, path: Path, model: str, rate: int = 0, clip: int = 0) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, step, str(path), model, str(rate), str(clip)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{step} on {path.name} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {step:6s} {path.name:12s} {result}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 8.0])
    parser.add_argument("--embed-hours", type=float, nargs="*", default=[1.0])
    parser.add_argument("--whole-hours", type=float, nargs="*", default=[1.0])
    parser.add_argument(
        "--model",
        default="default",
        help="a model name or folder; 'tiny': the tests' tiny random ClapModel",
    )
    parser.add_argument("--name", default="long_audio", help="bench/results/NAME.json/.md")
    args = parser.parse_args(argv)

    record: dict = {
        "command": "python bench/bench_long_audio.py " + " ".join(argv or sys.argv[1:]),
        "model": args.model,
        "file_rate": FILE_RATE,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared)",
        "runs": [],
    }
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp = Path(tmp)
        if args.model == "tiny":
            sys.path.insert(0, str(ROOT / "bench"))
            from _tiny import tiny_model_dir

            args.model = str(tiny_model_dir(tmp / "tiny"))
            record["model_note"] = "the tests' tiny random ClapModel (bench/_tiny.py)"
        info = run("info", Path("none"), args.model)
        record["model_rate"], record["clip_samples"] = rate, clip = info["rate"], info["clip"]
        print("model footprint", flush=True)
        record["model_footprint"] = run("model", tmp / "none", args.model)
        ten = tmp / "10min.flac"
        write_recording(ten, 10 / 60)
        record["equality_10min"] = run("equal", ten, args.model)
        for hours in args.hours:
            path = tmp / f"{hours:g}h.flac"
            t0 = time.perf_counter()
            write_recording(path, hours)
            row = {
                "hours": hours,
                "file_mb": path.stat().st_size / 1e6,
                "write_seconds": time.perf_counter() - t0,
            }
            print(f"{hours:g} h: {row['file_mb']:.0f} MB", flush=True)
            row["stream"] = run("stream", path, args.model, rate, clip)
            if hours in args.whole_hours:
                row["whole"] = run("whole", path, args.model, rate, clip)
            if hours in args.embed_hours:
                row["embed"] = run("embed", path, args.model)
            record["runs"].append(row)
            path.unlink()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(record))
    print(markdown(record))
    return 0


def markdown(r: dict) -> str:
    base = r["model_footprint"]["peak_rss_mb"]
    lines = [
        "## Long recordings: peak memory",
        "",
        f"`{r['command']}` on {r['machine']}. Recordings at {r['file_rate']} Hz mono FLAC, "
        f"model `{r.get('model_note', r['model'])}` ({r['model_rate']} Hz, windows of {r['clip_samples']} samples). "
        "Peak RSS of a fresh process per step.",
        "",
        f"Model footprint (load + embed a 5 s clip): {base:.0f} MB.",
        "",
        "| recording | step | windows | peak RSS (MB) | above the model (MB) | time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["runs"]:
        for step, what in (
            ("stream", "streamed decode + resample + windows (no model)"),
            ("whole", "whole-file decode + windows (before streaming, no model)"),
            ("embed", "encode_audio, streamed, with the model"),
        ):
            if step in row:
                m = row[step]
                above = f"{m['peak_rss_mb'] - base:.0f}" if step == "embed" else "-"
                lines.append(
                    f"| {row['hours']:g} h ({row['file_mb']:.0f} MB) | {what} | "
                    f"{m.get('windows', '')} | {m['peak_rss_mb']:.0f} | {above} | "
                    f"{m['seconds']:.0f} |"
                )
    eq = r["equality_10min"]
    lines += [
        "",
        f"A 10-minute recording embedded streamed and decoded whole: largest difference "
        f"between the two vectors {eq['max_abs_diff']:.2e}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
