"""Embedding webdataset shards: clips/s and peak memory with 1 and 2 processes, and memory
against the number of shards.

    python bench/bench_shards.py [--shards 100] [--per-shard 100] [--work /tmp/claptune-shards]

Generates ``--shards`` x ``--per-shard`` clips of 0.5 s (tones plus noise, 16 kHz FLAC) as
webdataset shards under ``--work`` (not in the repository), then runs ``claptune embed`` on
them with the tests' tiny random CLAP model (bench/_tiny.py), each run a fresh store:
1 process on a tenth of the shards, 1 process on all, 1 process on all writing the sharded
store layout, and 2 processes (gloo, as torchrun would start them) on all. To show that memory
does not depend on the number of shards, the same clips are also written as a tenth as many
shards, each 10x larger, and embedded by 1 process. Peak RSS is each process's ``ru_maxrss``.
Writes bench/results/shards.json and .md (memory only: those runs follow each other minutes
apart, so their times are not compared).

``--part scaling`` times 1 process against 2 on the same ``--shards`` x ``--per-shard`` clips,
alternating (1 2, 2 1, ...) ``--repeats`` times each, with the load before every run; it needs
at least 2 cores. Writes bench/results/shards-scaling.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

# A child: run the CLI, then record this process's peak RSS (KiB on Linux).
CHILD = """
import json, resource, sys
from claptune.cli import main
code = main(sys.argv[2:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(sys.argv[1], "w") as fh:
    json.dump({"code": code, "peak_rss_mib": peak / 1024}, fh)
sys.exit(code)
"""


def make_shards(folder: Path, n_shards: int, per_shard: int, total: int | None = None) -> str:
    """``total`` clips (default n_shards x per_shard), the same clips for any shard size."""
    from claptune.data.shards import write_audio_shards

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000

    def samples():
        for i in range(total or n_shards * per_shard):
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
            yield (
                f"clip{i:07d}",
                (wave + 0.05 * rng.standard_normal(len(t))).astype(np.float32),
                16000,
                f"tone {i}",
            )

    write_audio_shards(str(folder / "%06d.tar"), samples(), per_shard=per_shard)
    n_shards = -(-(total or n_shards * per_shard) // per_shard)
    return str(folder / f"{{000000..{n_shards - 1:06d}}}.tar")


def run(args: list[str], procs: int, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    port = _free_port()
    children = []
    start = time.perf_counter()
    for rank in range(procs):
        extra = (
            {}
            if procs == 1
            else {
                "WORLD_SIZE": str(procs),
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
            }
        )
        # the machine's cores shared out between the processes, as torchrun does
        threads = str(max(1, (os.cpu_count() or 1) // procs))
        out = work / f"rss-{rank}.json"
        children.append(
            (
                out,
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(out), *args],
                    env={**env, **extra, "OMP_NUM_THREADS": threads},
                    stderr=subprocess.PIPE,
                ),
            )
        )
    peaks = []
    for out, child in children:
        _, err = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"embed failed:\n{err.decode()[-3000:]}")
        peaks.append(json.loads(out.read_text())["peak_rss_mib"])
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peaks}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embed_args(model: Path, spec: str, out: Path, layout: str = "npz") -> list[str]:
    return [
        "embed", "--model", str(model), "--audio", spec, "--out", str(out),
        "--store-format", layout, "--no-progress",
    ]  # fmt: skip


def scaling(opts, model: Path, work: Path) -> None:
    """1 process against 2 on the same shards, interleaved (1 2 2 1 1 2 ...), fresh stores."""
    cores = os.cpu_count() or 1
    if cores < 2:
        raise SystemExit(f"{cores} core: 2 processes against 1 needs at least 2 cores")
    pattern = make_shards(work / "data-scaling", opts.shards, opts.per_shard)
    clips = opts.shards * opts.per_shard
    seconds: dict[int, list[float]] = {1: [], 2: []}
    loads: list[float] = []
    for r in range(opts.repeats):
        for procs in (1, 2) if r % 2 == 0 else (2, 1):
            out = work / f"store-scaling-{procs}"
            shutil.rmtree(out, ignore_errors=True)
            loads.append(round(os.getloadavg()[0], 2))
            seconds[procs].append(
                round(run(embed_args(model, pattern, out), procs, work)["seconds"], 1)
            )
            print(procs, seconds[procs][-1], loads[-1], flush=True)
    ratios = [a / b for a, b in zip(seconds[1], seconds[2], strict=True)]
    result = {
        "command": "python bench/bench_shards.py " + " ".join(sys.argv[1:]),
        "cores": cores,
        "clips": clips,
        "shards": opts.shards,
        "seconds": {str(k): v for k, v in seconds.items()},
        "clips_per_s_median": {
            str(k): round(clips / float(np.median(v)), 2) for k, v in seconds.items()
        },
        "speedup_2_over_1_pairs": [round(x, 3) for x in ratios],
        "speedup_2_over_1_median": round(float(np.median(ratios)), 3),
        "load_average_1min_at_runs": loads,
    }
    out_dir = ROOT / "bench" / "results"
    (out_dir / "shards-scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Embedding webdataset shards: 2 processes against 1",
        "",
        f"Command: `{result['command']}`. {cores} CPU cores, shared with other jobs; each process "
        f"gets cores / processes torch threads. {opts.shards} shards x {opts.per_shard} clips "
        "(0.5 s at 16 kHz, FLAC; tiny random CLAP, 1 s window at 48 kHz), a fresh store per "
        "run (process start-up and model loading included). The runs alternate (1 then 2, then "
        "2 then 1, ...) so both see the same load; 1-min load average before each run: "
        + ", ".join(f"{x:.1f}" for x in loads)
        + ".",
        "",
        "| processes | seconds (each run) | clips/s (median) |",
        "|---:|---|---:|",
    ]
    for procs in (1, 2):
        lines.append(
            f"| {procs} | {', '.join(map(str, seconds[procs]))} | "
            f"{result['clips_per_s_median'][str(procs)]} |"
        )
    lines += [
        "",
        f"2 processes over 1: {result['speedup_2_over_1_median']:.2f}x (median of the paired "
        f"runs: {', '.join(f'{x:.2f}' for x in ratios)}).",
    ]
    (out_dir / "shards-scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("memory", "scaling"), default="memory")
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=4, help="scaling: runs of each")
    ap.add_argument("--work", type=Path, default=Path("/tmp/claptune-shards"))
    ap.add_argument("--render", action="store_true", help="rewrite shards.md from shards.json")
    opts = ap.parse_args()
    from _tiny import tiny_model_dir

    if opts.render:
        render_memory(json.loads((ROOT / "bench" / "results" / "shards.json").read_text()))
        return
    work = opts.work
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "config.json").is_file():
        tiny_model_dir(model)
    if opts.part == "scaling":
        scaling(opts, model, work)
        return
    t0 = time.perf_counter()
    pattern = make_shards(work / "data", opts.shards, opts.per_shard)
    gen_s = time.perf_counter() - t0
    tenth = max(1, opts.shards // 10)
    total = opts.shards * opts.per_shard
    big = make_shards(work / "data-big", tenth, -(-total // tenth), total)
    small = pattern.replace(f"{opts.shards - 1:06d}}}", f"{tenth - 1:06d}}}")
    configs = [  # (name, shards, processes, store layout)
        ("1 process", small, tenth, 1, "npz"),
        ("1 process, same clips in 10x larger shards", big, tenth, 1, "npz"),
        ("1 process", pattern, opts.shards, 1, "npz"),
        ("1 process, sharded store", pattern, opts.shards, 1, "shards"),
        ("2 processes", pattern, opts.shards, 2, "npz"),
    ]
    rows = []
    stores = {}
    for name, spec, n_shards, procs, layout in configs:
        out = work / f"store-{n_shards}-{procs}-{layout}-{'big' if spec == big else 'std'}"
        shutil.rmtree(out, ignore_errors=True)
        got = run(embed_args(model, spec, out, layout), procs, work)
        clips = total if spec == big else n_shards * opts.per_shard
        rows.append(
            {
                "run": name,
                "shards": n_shards,
                "clips": clips,
                "processes": procs,
                "store": layout,
                "seconds": round(got["seconds"], 1),
                "clips_per_s": round(clips / got["seconds"], 1),
                "peak_rss_mib": [round(p) for p in got["peak_rss_mib"]],
            }
        )
        stores[(n_shards, procs, layout, spec == big)] = out
        print(rows[-1], flush=True)
    from claptune.embed import load_store

    one = load_store(stores[(opts.shards, 1, "npz", False)])
    two = load_store(stores[(opts.shards, 2, "npz", False)])
    same = one.ids == two.ids and bool(np.abs(one.embeddings - two.embeddings).max() <= 1e-6)
    result = {
        "command": "python bench/bench_shards.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end (CPU shared with other jobs)",
        "clip": "0.5 s at 16 kHz, FLAC; tiny random CLAP (1 s window at 48 kHz)",
        "generate_seconds": round(gen_s, 1),
        "two_processes_equal_one": same,
        "runs": rows,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "shards.json").write_text(json.dumps(result, indent=1) + "\n")
    render_memory(result)


def render_memory(result: dict) -> None:
    """shards.md: peak memory per run. The runs follow each other minutes apart under a load
    that changes, so their times are not compared here (``--part scaling`` does that)."""
    lines = [
        "# Embedding webdataset shards: peak memory",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']}. Clips: "
        f"{result['clip']}. Generating the shards took {result['generate_seconds']:.0f} s.",
        "",
        "| run | shards | clips | store | peak RSS per process (MiB) |",
        "|---|---:|---:|---|---|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['run']} | {r['shards']} | {r['clips']} | {r['store']} | "
            f"{', '.join(map(str, r['peak_rss_mib']))} |"
        )
    lines += [
        "",
        "2 processes give the same ids and vectors as 1 process: "
        f"{result['two_processes_equal_one']}.",
        "",
        "The runs' times are in shards.json but are not a throughput comparison: they ran one "
        "after the other, minutes apart, on a machine shared with other jobs whose load changed "
        "between them. 2 processes against 1, timed alternately: shards-scaling.md.",
    ]
    (ROOT / "bench" / "results" / "shards.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
