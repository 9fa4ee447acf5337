"""Fine-tuning: a student trained on curated pairs against its frozen teacher.

``fit(model, pairs, TrainConfig(...), replay=..., out_dir=...)`` is the whole API; the CLI is
``claptune train``. Modules: ``config`` (TrainConfig), ``data`` (pairs, held-out split, batch
plan, clips), ``loop`` (fit), ``heads`` (the default model's head pretraining), ``checkpoint``,
``lora``, ``logs``. Process groups: ``claptune.distributed``; frozen features:
``claptune.features``.
"""

from claptune.train.config import TrainConfig
from claptune.train.data import TrainPairs, as_train_pairs
from claptune.train.loop import TrainResult, fit, heads_train_on_features

__all__ = [
    "TrainConfig",
    "TrainPairs",
    "TrainResult",
    "as_train_pairs",
    "fit",
    "heads_train_on_features",
]
