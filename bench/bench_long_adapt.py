"""Peak memory of ``claptune adapt`` with a long recording among the clips, against the same run
with a 10-second one in its place.

    python bench/bench_long_adapt.py --model MODEL_FOLDER [--minutes 60] [--rate 16000]

Writes, in a temporary folder: 64 short tone clips (enough to fill the encoder's batches,
as any real run does), a tiny captioned corpus (12 tone clips), a
class list, and one recording of ``--minutes`` (noise plus a gliding tone, FLAC, written block
by block); then runs ``claptune adapt`` twice, each in a fresh Python process whose own peak
RSS (``VmHWM``) is reported: the clips plus a 10-second recording, and the clips plus the long
one. The feature store decodes a long file streamed (``claptune.features``) and the
report's previews read only their first seconds, so the two peaks should differ by the
features of the extra windows only. Writes bench/results/long_adapt.json (one entry per model)
and long_adapt.md.
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
N_CLIPS = 64  # short clips: enough windows to fill the feature batches, as a real run does

CHILD = r"""
import json, sys
from claptune.cli import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
print(json.dumps({"rc": code, "peak_rss_mb": peak}))
"""


def write_recording(path: Path, seconds: float, rate: int) -> None:
    """Noise plus a slowly gliding tone, written in one-minute blocks (bounded memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    n_total, block = int(seconds * rate), 60 * rate
    with sf.SoundFile(str(path), "w", rate, 1, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, n_total, block):
            t = np.arange(start, min(start + block, n_total)) / rate
            freq = 300 + 200 * np.sin(2 * np.pi * t / 600)
            f.write(0.2 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.shape))


def write_inputs(root: Path, rate: int) -> tuple[Path, Path, Path]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(1)
    clips, corpus = root / "clips", root / "corpus"
    (corpus / "audio").mkdir(parents=True)
    clips.mkdir()
    t = np.arange(rate) / rate
    for i in range(N_CLIPS):
        wave = 0.3 * np.sin(2 * np.pi * (300 + 400 * (i % 3)) * t) + 0.02 * rng.normal(size=rate)
        sf.write(clips / f"c{i}.wav", wave.astype(np.float32), rate)
    lines = ["path,caption,source,license"]
    words = ["a low hum", "a mid beep", "a high whistle", "rain falling"]
    for i in range(12):
        wave = 0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t) + 0.02 * rng.normal(size=rate)
        sf.write(corpus / "audio" / f"{i}.wav", wave.astype(np.float32), rate)
        lines.append(f"audio/{i}.wav,{words[i % 4]} {i},bench,CC0-1.0")
    (corpus / "manifest.csv").write_text("\n".join(lines) + "\n")
    classes = root / "classes.txt"
    classes.write_text("low hum\nmid beep\nhigh whistle\n")
    return clips, corpus, classes


def adapt(model: str, clips: Path, extra: Path, corpus: Path, classes: Path, out: Path) -> dict:
    argv = ["adapt", "--model", model, "--audio", str(clips), str(extra), "--classes"]
    argv += [str(classes), "--corpus", str(corpus), "--out", str(out), "--quiet"]
    argv += ["--cache-dir", str(out.parent / f"{out.name}-cache"), "--no-save-model"]
    argv += ["--train", "epochs=1", "--template", "default"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model name or folder")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=16000, help="sample rate of the files")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="claptune-bench-") as tmp:
        root = Path(tmp)
        clips, corpus, classes = write_inputs(root, args.rate)
        short, long = root / "short.flac", root / "long.flac"
        write_recording(short, 10.0, args.rate)
        write_recording(long, args.minutes * 60, args.rate)
        rows = {
            "10 s": adapt(args.model, clips, short, corpus, classes, root / "run-short"),
            f"{args.minutes:g} min": adapt(args.model, clips, long, corpus, classes, root / "run"),
        }
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus (shared)",
        "model": args.model if not Path(args.model).exists() else Path(args.model).name,
        "minutes": args.minutes,
        "rate": args.rate,
        "runs": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "long_adapt.json"  # one entry per model: a run replaces its model's entry
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded[result["model"]] = result
    path.write_text(json.dumps(recorded, indent=1) + "\n")
    every = [recorded[name] for name in sorted(recorded)]
    (RESULTS / "long_adapt.md").write_text(markdown(every))
    print(markdown(every))
    return 0


def markdown(results: list[dict]) -> str:
    """One table row per model and recording, from every recorded model's run."""
    lines = [
        "## `adapt` with a long recording: peak memory",
        "",
        "`python bench/bench_long_adapt.py --model MODEL --minutes M`: `claptune adapt` on 64 "
        "short clips plus one recording, in a fresh process per run (its peak RSS); files at "
        f"{results[0]['rate'] if results else 16000} Hz, {results[0]['machine'] if results else ''}.",
        "",
        "| model | the extra recording | peak RSS (MB) | above the 10 s run (MB) | time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        base = r["runs"]["10 s"]["peak_rss_mb"]
        for name, row in r["runs"].items():
            above = "" if name == "10 s" else f"{row['peak_rss_mb'] - base:+.0f}"
            lines.append(
                f"| {r['model']} | {name} | {row['peak_rss_mb']:.0f} | {above} | {row['seconds']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
