"""Writing a benchmark's results: bench/results/NAME.json (the command that produced it, the
machine, the seconds it took, then the benchmark's own data) and NAME.md (its table)."""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path


def write_results(
    out: Path,
    name: str,
    data: dict,
    markdown: str,
    *,
    script: str,
    argv: list[str] | None = None,
    t0: float | None = None,
    indent: int = 1,
) -> None:
    """Write ``out/name.json`` and ``out/name.md``. ``script``: the file under bench/;
    ``argv``: its arguments (``sys.argv[1:]`` when None), recorded as a command that can be
    pasted back; ``t0``: its ``time.time()`` at the start, for the seconds it took."""
    args = sys.argv[1:] if argv is None else list(argv)
    record = {
        "command": shlex.join(["python", f"bench/{script}", *args]),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    if t0 is not None:
        record["seconds"] = time.time() - t0
    record.update(data)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=indent, default=str) + "\n")
    (out / f"{name}.md").write_text(markdown)
