"""``TrainConfig``: every setting of a fine-tuning run, validated, saved beside each checkpoint.

Defaults follow the published configuration of Wang et al. (2023) where it is known (Adam at
1e-4, reduced on plateau down to 1e-8, 20 epochs, batch 128, curated/replay mixing at 0.5,
beta 0.3, all parameters trained, mixed precision); the plateau factor and patience are
SpeechBrain's defaults, which the published code ran with.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from claptune.errors import ClaptuneError
from claptune.typed import cli

# the losses improve and ablate train students with (and ablate's default grid)
STUDENT_LOSSES = ("hard", "soft")
# every loss fit knows: multipos needs pairs grouped by caption (head pretraining), which
# curated pairs are not, so improve does not offer it
LOSSES = (*STUDENT_LOSSES, "multipos")
# auto: projections on a model with a frozen-encoder split (heads on cached features), else all
TRAINABLE = ("all", "projections", "lora", "auto")
# epochs of head training on cached features when ``epochs`` is None (``for_model``): about 200
# steps on a 2.5k-pair replay set, the compute budget that lets improve's 3 x 3 runs (and the 144
# of ablate) finish on a busy 2-core CPU; chosen for time, never by a target label
HEAD_EPOCHS = 10
CROPS = ("fixed", "random")
PRECISIONS = ("auto", "fp32", "bf16")
KEEP = ("last", "best_val")
ON_ERROR = ("raise", "skip")

# fields that may change between a run and its resumption without changing what it computes
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "max_steps",
        "save_every",
        "num_workers",
        "progress",
        "device",
        "extra",
        # applied after the last step to the checkpoint's fine-tuned weights: resuming a
        # finished run with another value re-ensembles it without training again
        "wise_alpha",
    }
)


@dataclass
class TrainConfig:
    # hard: the better loss in improve's ablation
    loss: str = field(
        default="hard",
        metadata=cli(
            "contrastive loss (hard is improve's: the better one in its ablation)", choices=LOSSES
        ),
    )
    beta: float = field(default=0.3, metadata=cli("soft-target weight of teacher similarities"))
    normalize_targets: bool = field(
        default=False,
        metadata=cli("renormalise soft target rows (the published rows are not)"),
    )
    epochs: int | None = field(
        default=20,
        metadata=cli(
            "passes over the curated pairs (none: HEAD_EPOCHS for heads on cached features, "
            "else 20)"
        ),
    )
    max_steps: int | None = field(
        default=None, metadata=cli("stop (with a checkpoint) after this many steps in total")
    )
    batch_size: int = field(
        default=128, metadata=cli("global batch size (split across processes under torchrun)")
    )
    lr: float = field(default=1e-4, metadata=cli("Adam learning rate"))
    weight_decay: float = 0.0
    min_lr: float = field(default=1e-8, metadata=cli("floor of the plateau schedule"))
    plateau_factor: float = 0.5
    plateau_patience: int = 2  # epochs without improvement of the held-out loss
    grad_clip: float = field(default=1.0, metadata=cli("max global grad norm; 0 disables"))
    p_curated: float = field(
        default=0.5, metadata=cli("probability that a step draws its batch from curated pairs")
    )
    val_fraction: float = field(
        default=0.05,
        metadata=cli("fraction of curated clips held out for the plateau/selection loss"),
    )
    keep: str = field(
        default="last",
        metadata=cli(
            "final model: last step or lowest held-out curated loss (no labels)", choices=KEEP
        ),
    )
    # weight-space ensemble with the starting model (WiSE-FT, Wortsman et al. 2022)
    wise_alpha: float = field(
        default=1.0,
        metadata=cli(
            "weight-space ensemble with the starting model (WiSE-FT): keep alpha x fine-tuned "
            "+ (1 - alpha) x starting weights; 1 = plain fine-tune (improve: --train wise_alpha=A)"
        ),
    )
    trainable: str = field(
        default="all",
        metadata=cli(
            "which parameters train (auto: the projections where the encoders can stay frozen "
            "with cached features, else all)",
            choices=TRAINABLE,
        ),
    )
    lora_rank: int = field(default=8, metadata=cli("rank of the LoRA adapters"))
    lora_alpha: int = field(default=16, metadata=cli("scale of the LoRA adapters"))
    lora_targets: list[str] | None = None  # module-name suffixes; None = backend's choice
    crop: str = field(
        default="fixed",
        metadata=cli(
            "training windows: fixed (teacher embeddings cacheable) or random (paper)",
            choices=CROPS,
        ),
    )
    precision: str = field(
        default="auto",
        metadata=cli("auto: bf16 autocast on CUDA, fp32 on CPU", choices=PRECISIONS),
    )
    device: str = field(
        default="auto",
        metadata=cli(
            "torch device of training: auto (cuda, this process's local rank, if available, "
            "else cpu), cpu, cuda, cuda:1, ..."
        ),
    )
    seed: int = field(default=0, metadata=cli("seed of batches, crops and initialisation"))
    save_every: int = field(
        default=200, metadata=cli("steps between checkpoints (each epoch end saves too)")
    )
    num_workers: int = field(
        default=2,
        metadata=cli("audio decoding workers beside the main process; 0 decodes inline"),
    )
    progress: bool = True  # tqdm bar per epoch (claptune train --quiet turns it off)
    on_error: str = field(
        default="raise",
        metadata=cli(
            "unreadable audio: stop with an error (raise) or leave its pairs out and list it "
            "in OUT/skipped_clips.json (skip)",
            choices=ON_ERROR,
        ),
    )
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    def __post_init__(self) -> None:
        _choice("loss", self.loss, LOSSES)
        _choice("trainable", self.trainable, TRAINABLE)
        _choice("crop", self.crop, CROPS)
        _choice("precision", self.precision, PRECISIONS)
        _choice("keep", self.keep, KEEP)
        _choice("on_error", self.on_error, ON_ERROR)
        _check(0.0 <= self.beta <= 1.0, f"beta must lie in [0, 1], got {self.beta}")
        _check(self.epochs is None or self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        _check(
            self.max_steps is None or self.max_steps >= 1,
            f"max_steps must be >= 1, got {self.max_steps}",
        )
        _check(
            self.batch_size >= 2,
            f"batch_size must be >= 2 for a contrastive loss, got {self.batch_size}",
        )
        _check(
            self.lr > 0 and self.min_lr >= 0 and self.min_lr <= self.lr,
            f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr} min_lr={self.min_lr}",
        )
        _check(
            0.0 < self.plateau_factor < 1.0,
            f"plateau_factor must lie in (0, 1), got {self.plateau_factor}",
        )
        _check(self.plateau_patience >= 0, "plateau_patience must be >= 0")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}")
        _check(0.0 <= self.p_curated <= 1.0, f"p_curated must lie in [0, 1], got {self.p_curated}")
        _check(
            0.0 <= self.val_fraction < 1.0,
            f"val_fraction must lie in [0, 1), got {self.val_fraction}",
        )
        _check(
            0.0 < self.wise_alpha <= 1.0,
            f"wise_alpha must lie in (0, 1], got {self.wise_alpha}",
        )
        _check(
            self.lora_rank >= 1 and self.lora_alpha >= 1, "lora_rank and lora_alpha must be >= 1"
        )
        _check(self.save_every >= 1, "save_every must be >= 1")
        _check(self.num_workers >= 0, "num_workers must be >= 0")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, rejecting keys that are not fields (typos fail loudly)."""
        from claptune.typed import from_mapping

        return from_mapping(cls, values, "training settings")

    def for_model(self, model: Any) -> TrainConfig:
        """This config with its model-dependent choices made for ``model``: ``trainable="auto"``
        trains the projections of a model whose encoders stay frozen with cached features
        (``supports_feature_cache``), every parameter otherwise; ``epochs=None`` is HEAD_EPOCHS
        when only heads train on cached features, 20 (the published count) otherwise."""
        cacheable = bool(getattr(model, "supports_feature_cache", False))
        trainable = self.trainable
        if trainable == "auto":
            trainable = "projections" if cacheable else "all"
        epochs = self.epochs
        if epochs is None:
            epochs = HEAD_EPOCHS if cacheable and trainable == "projections" else 20
        return dataclasses.replace(self, trainable=trainable, epochs=epochs)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields whose values differ, other than those a resumed run may change."""
        mine, theirs = self.to_dict(), other.to_dict()
        return sorted(k for k in mine if k not in RESUMABLE_CHANGES and mine[k] != theirs[k])


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ClaptuneError(message)
