"""``claptune improve`` and ``claptune ablate``: the whole method, end to end, with a report.

- ``config``: ``ImproveConfig``, the run's settings, validated;
- ``splits``: seeded adaptation/test splits that never read a label (by source recording, or at
  random; stratified for comparison);
- ``curate``: which data each curation method gets;
- ``pipeline``: ``run_improve`` (before, curate, fit, after, report);
- ``runs``: figures with spreads and paired tests over runs, priors, label-free signals;
- ``transfer``: zero-shot on held-out corpus clips whose caption names a target class;
- ``ablation``: ``run_ablation``, every method with both losses on the same splits and seeds;
- ``adapt``: ``run_adapt``, the method on unlabeled clips and class names, a label-free report.
"""

from claptune.improve.ablation import AblationEntry, ablation_grid, run_ablation
from claptune.improve.adapt import AdaptConfig, AdaptResult, run_adapt
from claptune.improve.config import ImproveConfig
from claptune.improve.pipeline import ImproveResult, Workspace, run_improve
from claptune.improve.splits import Split, make_splits, stratified_split

__all__ = [
    "AdaptConfig",
    "AdaptResult",
    "run_adapt",
    "ImproveConfig",
    "ImproveResult",
    "Workspace",
    "run_improve",
    "AblationEntry",
    "ablation_grid",
    "run_ablation",
    "Split",
    "make_splits",
    "stratified_split",
]
