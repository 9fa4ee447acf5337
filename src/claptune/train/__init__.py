"""Fine-tuning: a student trained on curated pairs against its frozen teacher.

``fit(model, pairs, TrainConfig(...), replay=..., out_dir=...)`` is the whole API; the CLI is
``claptune train``. Modules: ``config`` (TrainConfig), ``data`` (pairs, held-out split, batch
plan, clips), ``loop`` (fit), ``checkpoint``, ``distributed``, ``lora``, ``logs``.
"""

from claptune.train.config import TrainConfig
from claptune.train.data import TrainPairs, as_train_pairs
from claptune.train.loop import TrainResult, fit

__all__ = ["TrainConfig", "TrainPairs", "TrainResult", "as_train_pairs", "fit"]
