"""Resumable checkpoints: student weights (safetensors), optimiser, scheduler, RNG, progress.

A checkpoint folder holds ``student.safetensors`` (every trainable parameter and every
buffer of the student: frozen weights never change, so they come back from the starting model
and a resumed run still continues bit for bit), ``trainer.pt`` (optimiser and scheduler state, RNG states),
``progress.json`` (step, epoch, running sums, history) and ``config.json`` (the resolved
TrainConfig). It is written beside the live one and swapped in by renames, so a kill at any
moment leaves the last complete checkpoint readable.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from claptune.errors import ClaptuneError
from claptune.models.checkpoints import torch_load_safely
from claptune.train.config import TrainConfig

CHECKPOINT = "checkpoint"


def student_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters and all buffers (batch-norm statistics may change in training)."""
    state = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    state.update((n, b.detach()) for n, b in model.named_buffers())
    return {n: t.contiguous().cpu().clone() for n, t in state.items()}


def save_student(model: torch.nn.Module, path: Path) -> Path:
    save_file(student_state(model), str(path))
    return path


def load_student(model: torch.nn.Module, path: Path) -> None:
    """Copy saved tensors into ``model``; every trainable parameter must be in the file."""
    try:
        saved = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise ClaptuneError(
            f"cannot read {path}: damaged safetensors file "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None
    targets = dict(model.named_parameters())
    targets.update(model.named_buffers())
    unexpected = sorted(set(saved) - set(targets))
    missing = sorted(n for n, p in model.named_parameters() if p.requires_grad and n not in saved)
    if unexpected or missing:
        raise ClaptuneError(
            f"checkpoint {path} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]} (resume with the same --model and --trainable)"
        )
    wrong = sorted(n for n, t in saved.items() if t.shape != targets[n].shape)
    if wrong:
        raise ClaptuneError(
            f"checkpoint {path} does not match the model: wrong shape of "
            f"{wrong[:5]} (resume with the same --model and --trainable)"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            targets[name].copy_(tensor)


def save_checkpoint(
    out_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: dict[str, Any],
    config: TrainConfig,
) -> Path:
    final = out_dir / CHECKPOINT
    tmp, old = out_dir / f"{CHECKPOINT}.tmp", out_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_student(model, tmp / "student.safetensors")
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            tmp / "trainer.pt",
        )
        (tmp / "progress.json").write_text(json.dumps(progress, indent=1) + "\n")
        config.save(tmp / "config.json")
    except BaseException:  # a full disk: the previous checkpoint stays, the partial one goes
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint in ``out_dir`` (the previous one if killed mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = out_dir / name
        if (path / "progress.json").is_file():
            return path
    return None


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
) -> dict[str, Any]:
    """Restore everything into the given objects; returns the progress dict."""
    try:
        saved = TrainConfig.load(path / "config.json")
    except (OSError, ValueError) as err:
        raise ClaptuneError(f"cannot resume from {path / 'config.json'}: {err}") from None
    changed = config.differences(saved)
    if changed:
        raise ClaptuneError(
            f"cannot resume from {path}: settings differ ({', '.join(changed)}); "
            "use a new --out or the original settings"
        )
    load_student(model, path / "student.safetensors")
    trainer_pt = path / "trainer.pt"
    # weights_only: a run folder may come from elsewhere, and unpickling can run code
    state = torch_load_safely(trainer_pt)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        raise ClaptuneError(
            f"cannot resume from {trainer_pt}: it does not hold this run's optimiser, scheduler "
            f"and RNG state ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    progress_json = path / "progress.json"
    try:
        progress = json.loads(progress_json.read_text())
    except (OSError, ValueError) as err:
        raise ClaptuneError(f"cannot resume from {progress_json}: {err}") from None
    if not isinstance(progress, dict) or not isinstance(progress.get("step"), int):
        raise ClaptuneError(f"cannot resume from {progress_json}: no step count in it")
    return progress
