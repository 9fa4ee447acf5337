"""Start-up time of the command line: every `--help` against `python -c "import torch"`.

    python bench/bench_cli.py [--repeats 7]

Sub-commands are registered lazily and building a sub-command's parser imports none of torch,
scipy, transformers or numpy (tests/test_cli.py checks the imports), so `claptune --help`,
every `claptune COMMAND --help`, `claptune --version` and `claptune models` start without them;
the goal is every `--help` under 0.3 s where importing torch alone takes 1-2 s. Each command runs as a fresh
interpreter (``python -m claptune ...``, what the console script runs), the commands take turns
within each repeat so that all see the same load on a shared machine, and the medians are
reported beside a bare ``python -c pass``.

Writes bench/results/cli.json and bench/results/cli.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL_S = 0.3
SUB_COMMANDS = (
    "models",
    "embed",
    "zeroshot",
    "curate",
    "train",
    "pretrain",
    "improve",
    "adapt",
    "demo",
    "ablate",
    "push",
)

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "claptune --help": [sys.executable, "-m", "claptune", "--help"],
    "claptune --version": [sys.executable, "-m", "claptune", "--version"],
    "claptune models": [sys.executable, "-m", "claptune", "models"],
    **{
        f"claptune {c} --help": [sys.executable, "-m", "claptune", c, "--help"]
        for c in SUB_COMMANDS
    },
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
}


def wall_time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for cmd in COMMANDS.values():  # warm the file cache once; not timed
        wall_time(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for r in range(args.repeats):
        names = list(COMMANDS)
        names = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
        for name in names:
            times[name].append(wall_time(COMMANDS[name], env))
    medians = {name: statistics.median(t) for name, t in times.items()}
    import torch

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end, python {platform.python_version()}, "
        f"torch {torch.__version__}",
        "command": "python bench/bench_cli.py" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "repeats": args.repeats,
        "goal_seconds": GOAL_S,
        "median_seconds": medians,
        "all_seconds": times,
        "help_vs_import_torch": medians["claptune --help"] / medians['python -c "import torch"'],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cli.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "cli.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = [
        f"Measured {result['date']} on {result['machine']}; command: "
        f"`{result['command']}` (each command a fresh interpreter; median of "
        f"{result['repeats']} interleaved runs).",
        "",
        "| command | median wall s | all runs, s |",
        "|---|---:|---|",
    ]
    for name, median in result["median_seconds"].items():
        runs = ", ".join(f"{t:.2f}" for t in result["all_seconds"][name])
        lines.append(f"| `{name}` | {median:.3f} | {runs} |")
    help_s = result["median_seconds"]["claptune --help"]
    helps = {n: t for n, t in result["median_seconds"].items() if n.endswith("--help")}
    slowest = max(helps, key=helps.get)
    within = "within" if helps[slowest] < result["goal_seconds"] else "over"
    lines += [
        "",
        f"`claptune --help` takes {help_s:.3f} s, "
        f"{result['help_vs_import_torch']:.2f}x the time of importing torch; the slowest "
        f"help, `{slowest}`, {helps[slowest]:.3f} s: {within} the goal of "
        f"{result['goal_seconds']} s for every `--help`.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
