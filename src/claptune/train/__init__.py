"""Fine-tuning: a student trained on curated pairs against its frozen teacher.

``fit(model, pairs, TrainConfig(...), replay=..., out_dir=...)`` is the whole API; the CLI is
``claptune train``. Modules: ``config`` (TrainConfig), ``data`` (pairs, held-out split, batch
plan, clips), ``loop`` (fit), ``heads`` (the default model's head pretraining), ``checkpoint``,
``lora``, ``logs``. Process groups: ``claptune.distributed``; frozen features:
``claptune.features``.
Names are imported on first use (PEP 562), so ``claptune.train.config`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "TrainConfig": "config",
    "TrainPairs": "data",
    "as_train_pairs": "data",
    "TrainResult": "loop",
    "fit": "loop",
    "heads_train_on_features": "loop",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'claptune.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"claptune.train.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_HOME))


__all__ = sorted(_HOME)
