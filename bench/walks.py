"""Follow a run's configuration through the code: files entered, and climbs back up.

    python bench/walks.py --root ../shared/data/esc50-subset --out bench/results/walks.md

Runs ``run_improve``, ``run_adapt`` and ``run_ablation`` once each (the default model, one
split, one seed, cached features) under ``sys.setprofile`` and records every call between two
functions of claptune's sources. For each walk it reports:

- *files entered*: the claptune files any call of the walk went into;
- *climbs*: distinct call edges (caller function -> callee function) that go back up into the
  composition layer, ``claptune/improve/{workspace,loop,pipeline,adapt,ablation}.py``, from a
  file outside it: a helper or a lower stage calling a ``Workspace`` method or a callback that
  the composition layer handed down. The redesign of issue 17 asks for at most 8 per walk.

Each edge is counted once however often it runs (a static call site seen at run time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import claptune

SRC = Path(claptune.__file__).resolve().parent
COMPOSERS = {f"improve/{m}.py" for m in ("workspace", "loop", "pipeline", "adapt", "ablation")}


def rel(filename: str) -> str | None:
    path = Path(filename)
    if not path.is_absolute() or SRC not in path.parents:
        return None
    return path.relative_to(SRC).as_posix()


def trace(fn, *args, **kwargs) -> tuple[set[str], dict[tuple[str, str], int]]:
    files: set[str] = set()
    edges: dict[tuple[str, str], int] = defaultdict(int)

    def profile(frame, event, arg):
        if event != "call":
            return
        callee = rel(frame.f_code.co_filename)
        if callee is None:
            return
        files.add(callee)
        back = frame.f_back
        while back is not None and rel(back.f_code.co_filename) is None:
            back = back.f_back  # through the standard library and numpy, to the claptune caller
        if back is None:
            return
        caller = rel(back.f_code.co_filename)
        if callee in COMPOSERS and caller not in COMPOSERS:
            edges[(f"{caller}:{back.f_code.co_name}", f"{callee}:{frame.f_code.co_name}")] += 1

    sys.setprofile(profile)
    try:
        fn(*args, **kwargs)
    finally:
        sys.setprofile(None)
    return files, dict(edges)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="../shared/data/esc50-subset")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "walks.md")
    args = p.parse_args(argv)
    from claptune.data import load_dataset
    from claptune.improve.ablation import AblationEntry, run_ablation
    from claptune.improve.adapt import run_adapt
    from claptune.improve.config import ImproveConfig
    from claptune.improve.pipeline import run_improve

    tmp = Path(tempfile.mkdtemp(prefix="walks-"))
    base = dict(model="default", n_splits=1, n_seeds=1)
    improve = ImproveConfig(target="esc50", root=args.root, **base)
    clips = load_dataset("esc50", root=args.root)
    adapt = ImproveConfig.unlabeled(
        tuple(str(c) for c in clips.items[::6]), tuple(clips.class_names), seed=0
    )
    grid = [AblationEntry((), None), AblationEntry(("pseudo_refined",), "hard")]
    walks = {
        "run_improve": (run_improve, (improve, tmp / "improve"), {"progress": False}),
        "run_adapt": (run_adapt, (adapt, tmp / "adapt"), {"progress": False}),
        "run_ablation": (run_ablation, (improve, tmp / "ablate", grid), {"progress": False}),
    }
    lines = [
        "# Walks through the composition layer",
        "",
        f"`python bench/walks.py` ({time.strftime('%Y-%m-%d')}): each run traced once (default "
        "model, 1 split x 1 seed). Files entered: claptune files any call went into. Climbs: "
        "distinct call edges from outside `improve/{workspace,loop,pipeline,adapt,ablation}.py` "
        "back into it (a Workspace method or a callback called from below). Target: at most 8.",
        "",
        "| walk | files entered | climbs |",
        "|---|---:|---:|",
    ]
    detail = []
    for name, (fn, fargs, fkw) in walks.items():
        files, edges = trace(fn, *fargs, **fkw)
        lines.append(f"| `{name}` | {len(files)} | {len(edges)} |")
        detail += ["", f"## `{name}`: climbs", ""]
        detail += [f"- `{a}` -> `{b}` ({n} calls)" for (a, b), n in sorted(edges.items())] or [
            "none"
        ]
    text = "\n".join(lines + detail) + "\n"
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
