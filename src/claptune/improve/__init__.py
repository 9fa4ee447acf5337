"""``claptune improve`` and ``claptune ablate``: the whole method, end to end, with a report.

- ``config``: ``ImproveConfig``, the run's settings, typed and validated (adapt's too: an
  unlabeled target);
- ``splits``: seeded adaptation/test splits that never read a label (by source recording, or at
  random; stratified for comparison);
- ``curate``: which data each curation method gets;
- ``workspace``: ``Workspace``, what the runs of one invocation share (teacher, data,
  embeddings, splits) and how one student is curated for, trained and measured;
- ``loop``: ``Runner``, the one split x seed loop (``Variant``: one configuration), and
  ``train_final``, the model worth saving;
- ``pipeline``: ``run_improve`` (before, the loop, report, the saved model and its card);
- ``runs``: figures with spreads and paired tests over runs, priors, label-free signals;
- ``transfer``: zero-shot on held-out corpus clips whose caption names a target class;
- ``ablation``: ``run_ablation``, every method with both losses on the same splits and seeds;
- ``adapt``: ``run_adapt``, the method on unlabeled clips and class names, a label-free report.

Names are imported on first use (PEP 562), so ``claptune.improve.config`` (the targets, losses
and split strategies that the command line's parsers list) is readable without torch or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "AblationEntry": "ablation",
    "ablation_grid": "ablation",
    "run_ablation": "ablation",
    "AdaptResult": "adapt",
    "run_adapt": "adapt",
    "ImproveConfig": "config",
    "ImproveResult": "pipeline",
    "Workspace": "workspace",
    "Runner": "loop",
    "Variant": "loop",
    "train_final": "loop",
    "run_improve": "pipeline",
    "Split": "splits",
    "make_splits": "splits",
    "stratified_split": "splits",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'claptune.improve' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"claptune.improve.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_HOME))


__all__ = sorted(_HOME)
