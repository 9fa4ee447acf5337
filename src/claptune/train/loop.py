"""``fit``: fine-tune a student (initialised from the model given) against its frozen teacher.

The student is the model passed in, trained in place; the teacher is that model as it was
on entry. What the teacher contributes (its embeddings, for the soft loss) is computed once
and cached whenever preprocessing is deterministic (``crop="fixed"``): text always, audio
for fixed crops, so the soft loss costs almost nothing over the hard one. With random crops
a frozen copy embeds each step's audio windows.

Fast path: when the model splits into frozen encoders and trainable heads
(``supports_feature_cache``) and only heads train, on fixed crops, the frozen features
of every clip and caption are computed once and the heads train on them. Pass a
``claptune.features.FeatureStore`` as ``features`` to read them from (and add them to) a
store that outlives the run: a second run then skips the encoders and the decoding.

Model selection and the learning-rate plateau only ever see the loss on held-out *curated*
pairs (an unlabeled signal); target-task labels never reach this module.

Run under ``torchrun --nproc_per_node N`` for data parallelism: ``batch_size`` stays the
global batch, each process embeds its slice, and embeddings are gathered with gradients so
the loss (and so the trajectory) is that of one process on the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import random
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from claptune.distributed import DistEnv, barrier, gather, gather_with_grad, setup_distributed
from claptune.errors import AudioDecodeError, ClaptuneError, InputWarning, printable
from claptune.features import FeatureStore
from claptune.losses import (
    hard_contrastive_loss,
    multi_positive_contrastive_loss,
    positive_mask,
    soft_contrastive_loss,
)
from claptune.models.base import AudioTextModel
from claptune.train.checkpoint import (
    CHECKPOINT,
    find_checkpoint,
    load_checkpoint,
    load_student,
    save_checkpoint,
    save_student,
)
from claptune.train.config import TrainConfig
from claptune.train.data import (
    ClipDataset,
    TrainPairs,
    as_train_pairs,
    clip_loader,
    epoch_plan,
    split_holdout,
    undecodable_clips,
    unreadable_clips,
)
from claptune.train.logs import TrainLog
from claptune.train.lora import add_lora, has_lora, merge_lora


@dataclass
class TrainResult:
    model: AudioTextModel  # the trained student (last step, or best held-out loss)
    out_dir: Path
    model_dir: Path | None  # out_dir/"model" as written by model.save (main process only)
    steps: int  # optimiser steps taken in total (including before a resume)
    epochs_completed: int
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch
    config: TrainConfig = field(default_factory=TrainConfig)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # on_error="skip": (clip, why)


BEST = "best_student.safetensors"  # heads/trainable weights at the lowest held-out loss
SKIPPED = "skipped_clips.json"  # on_error="skip": the clips left out, with their reasons


class _Embedder(nn.Module):
    """What DistributedDataParallel wraps: student embeddings of a batch and the logit scale."""

    def __init__(self, model: AudioTextModel, on_features: bool):
        super().__init__()
        self.model, self.on_features = model, on_features

    def forward(self, audio, text) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.on_features:
            return self.model.audio_head(audio), self.model.text_head(text), self.model.logit_scale
        return (
            self.model.audio_embeddings(audio),
            self.model.text_embeddings(text),
            self.model.logit_scale,
        )


@dataclass
class _Table:
    """All pairs in one table: rows of curated-train, then replay, then held-out pairs."""

    pairs: TrainPairs
    curated: np.ndarray
    replay: np.ndarray
    val: np.ndarray
    clips: list[str]  # unique audio paths
    captions: list[str]  # unique captions
    clip_of: np.ndarray  # row -> index into clips
    caption_of: np.ndarray  # row -> index into captions

    @classmethod
    def build(cls, curated: TrainPairs, replay: TrainPairs | None, config: TrainConfig) -> _Table:
        train_idx, val_idx = split_holdout(curated, config.val_fraction, config.seed)
        parts = [curated.subset(train_idx), replay or TrainPairs([], []), curated.subset(val_idx)]
        pairs = TrainPairs.concat(parts)
        n_cur, n_rep = len(parts[0]), len(parts[1])
        clip_index: dict[str, int] = {}
        caption_index: dict[str, int] = {}
        clip_of = np.array([clip_index.setdefault(a, len(clip_index)) for a in pairs.audio])
        caption_of = np.array([caption_index.setdefault(t, len(caption_index)) for t in pairs.text])
        return cls(
            pairs,
            np.arange(n_cur),
            np.arange(n_cur, n_cur + n_rep),
            np.arange(n_cur + n_rep, len(pairs)),
            list(clip_index),
            list(caption_index),
            clip_of,
            caption_of,
        )


def fit(
    model: AudioTextModel,
    pairs: TrainPairs | str | Path | Sequence,
    config: TrainConfig | None = None,
    replay: TrainPairs | str | Path | Sequence | None = None,
    out_dir: str | Path = "runs/train",
    resume: bool = False,
    overwrite: bool = False,
    features: FeatureStore | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place on curated ``pairs`` (mixed with ``replay`` pairs).

    ``pairs``/``replay``: TrainPairs, a pairs CSV (``audio``, ``text``[, ``class``]), or
    (audio, text) tuples. A run folder that holds a checkpoint is never overwritten silently:
    ``resume=True`` continues from its last checkpoint (pass the same starting model, since it
    is the teacher), ``overwrite=True`` deletes the earlier run's checkpoint, logs and model
    and starts again; with neither, ``ClaptuneError``. ``resume=True`` with no checkpoint in
    ``out_dir`` is a ``ClaptuneError`` too.
    ``features``: the store of ``model``'s frozen features, used on the fast path (only heads
    train, fixed crops); it must hold the features of this model's encoders.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    config = (config or TrainConfig()).for_model(model)
    out_dir = Path(out_dir)
    _check_run_folder(out_dir, resume, overwrite)
    device = _device(config)
    env = setup_distributed(device.type == "cuda")
    if env.enabled and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    _seed_everything(config.seed)
    if env.is_main:
        if overwrite:
            clear_run(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)

    curated, replay = as_train_pairs(pairs), None if replay is None else as_train_pairs(replay)
    n_pairs = len(curated) + (0 if replay is None else len(replay))
    curated, replay, skipped = _drop_unreadable(
        curated, replay, config, features, model.sample_rate
    )
    if skipped and env.is_main:
        n_left = n_pairs - len(curated) - (0 if replay is None else len(replay))
        _report_skipped(skipped, n_left, out_dir)
    table = _Table.build(curated, replay, config)
    if len(table.curated) + len(table.replay) < 2:
        raise ClaptuneError("need at least two training pairs")
    trainer = _Trainer(model, table, config, env, device, out_dir, features)
    result = trainer.run(resume)
    if result.model_dir is not None:
        _write_card(result, pairs, len(table.curated), len(table.replay))
    result.skipped = skipped
    return result


def _write_card(result: TrainResult, pairs: Any, n_curated: int, n_replay: int) -> None:
    """The saved model's card: the base model, loss, curation methods (a pairs CSV's
    ``method`` column) and the training settings."""
    from claptune.card import CardInfo, base_of, methods_of, write_model_card

    config = result.config
    last = result.history[-1] if result.history else {}
    details = {
        "trainable": config.trainable,
        "epochs": result.epochs_completed,
        "steps": result.steps,
        "batch size": config.batch_size,
        "lr": config.lr,
        "curated pairs": n_curated,
        "replay pairs": n_replay,
        "seed": config.seed,
        "kept": config.keep,
        "last held-out curated loss": last.get("val_loss"),
    }
    write_model_card(
        result.model_dir,
        CardInfo(
            made_by="claptune train",
            base=base_of(result.model),
            loss=config.loss,
            curation=methods_of(pairs) or list(config.extra.get("curation", [])),
            details=details,
        ),
    )


def _drop_unreadable(
    curated: TrainPairs,
    replay: TrainPairs | None,
    config: TrainConfig,
    features: FeatureStore | None = None,
    sample_rate: int | None = None,
) -> tuple[TrainPairs, TrainPairs | None, list[tuple[str, str]]]:
    """Check every clip's header before anything trains: raise the first unreadable clip's
    ``AudioDecodeError``, or (``on_error="skip"``) drop the pairs of every unreadable clip.

    Decided up front, so the pairs trained on, and so the batches, do not depend on when a
    bad clip would have come up; (path, reason) of each dropped clip is returned. Clips whose
    frozen features ``features`` already holds decoded before and are not probed again (an
    ablation's many head trainings on a cached corpus). With ``on_error="skip"`` the clips
    that pass the header check are also decoded whole (given ``sample_rate``), so a clip
    damaged past its header is skipped like any other instead of stopping the run.
    """
    clips = list(dict.fromkeys(curated.audio + ([] if replay is None else replay.audio)))
    if features is not None:
        clips = [c for c in clips if not features.holds(c)]
    failed = unreadable_clips(clips, config.num_workers)
    if config.on_error == "skip" and sample_rate is not None:
        probed = {path for path, _ in failed}
        rest = [c for c in clips if c not in probed]
        failed += undecodable_clips(rest, sample_rate, config.num_workers)
    if not failed:
        return curated, replay, []
    if config.on_error == "raise":
        raise AudioDecodeError(*failed[0])
    bad = {path for path, _ in failed}

    def readable(pairs: TrainPairs) -> TrainPairs:
        return pairs.subset([i for i, a in enumerate(pairs.audio) if a not in bad])

    return readable(curated), None if replay is None else readable(replay), failed


def _report_skipped(skipped: list[tuple[str, str]], n_pairs: int, out_dir: Path) -> None:
    """One warning, and every skipped clip with its reason in OUT/skipped_clips.json."""
    listing = out_dir / SKIPPED
    listing.write_text(json.dumps([{"path": p, "reason": r} for p, r in skipped], indent=2) + "\n")
    shown = ", ".join(f"{printable(p)} ({r})" for p, r in skipped[:3])
    more = f", ... ({len(skipped)} in all)" if len(skipped) > 3 else ""
    warnings.warn(
        f"left out {n_pairs} pairs of {len(skipped)} clips that cannot be read: {shown}{more}; "
        f"listed in {listing}",
        InputWarning,
        stacklevel=3,
    )


# what a run writes into its folder; ``overwrite=True`` removes these and nothing else
RUN_OUTPUTS = (
    CHECKPOINT,
    f"{CHECKPOINT}.old",
    f"{CHECKPOINT}.tmp",
    BEST,
    "model",
    "tensorboard",
    "config.json",
    "loss.csv",
    "metrics.jsonl",
    "loss.png",
    SKIPPED,
)


def _check_run_folder(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start over an earlier run unless told, and to resume from nothing."""
    checkpoint = find_checkpoint(out_dir)
    if resume and checkpoint is None:
        raise ClaptuneError(
            f"nothing to resume: {out_dir} holds no checkpoint; "
            "run without --resume to start training there"
        )
    if checkpoint is not None and not resume and not overwrite:
        raise ClaptuneError(
            f"{out_dir} already holds a training run (checkpoint at step "
            f"{_checkpoint_step(checkpoint)}); pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )


def _checkpoint_step(checkpoint: Path) -> str:
    try:
        return str(json.loads((checkpoint / "progress.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


def clear_run(out_dir: Path) -> None:
    """Delete what an earlier training run wrote into ``out_dir`` (and nothing else there)."""
    for name in RUN_OUTPUTS:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


class _Trainer:
    def __init__(
        self,
        model: AudioTextModel,
        table: _Table,
        config: TrainConfig,
        env: DistEnv,
        device: torch.device,
        out_dir: Path,
        features: FeatureStore | None = None,
    ):
        self.model, self.table, self.config, self.env = model, table, config, env
        self.device, self.out_dir = device, out_dir
        self.clips = ClipDataset(
            table.clips, model.sample_rate, model.clip_samples, config.crop, config.seed
        )
        self.on_features = heads_train_on_features(model, config)
        self.bf16 = config.precision == "bf16" or (
            config.precision == "auto" and device.type == "cuda"
        )

        # everything the teacher (= the model on entry) contributes, before anything trains
        self.teacher: AudioTextModel | None = None
        self.teacher_audio = self.teacher_text = None
        self.audio_feats = self.text_feats = None
        model.eval()
        if self.on_features and features is not None:
            if not features.serves(model):
                raise ClaptuneError(
                    "the feature store given to fit holds another model's frozen features"
                )
            self.audio_feats = features.fixed_audio(table.clips).to(device)
            self.text_feats = self._encode_captions(features.text).to(device)
        elif self.on_features:
            self.audio_feats = self._encode_clips(model.audio_features)
            self.text_feats = self._encode_captions(model.text_features)
        if config.loss == "soft":
            if self.on_features:
                with torch.no_grad():
                    self.teacher_audio = _batched(model.audio_head, self.audio_feats, 4096)
                    self.teacher_text = _batched(model.text_head, self.text_feats, 4096)
            else:
                self.teacher_text = self._encode_captions(model.text_embeddings)
                if config.crop == "fixed":
                    self.teacher_audio = self._encode_clips(model.audio_embeddings)
                else:
                    self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

        # the starting weights, for the weight-space ensemble at the end (WiSE-FT)
        self.start = _float_state(model) if config.wise_alpha < 1.0 else None
        # which parameters require grad is put back on exit, so a second fit() of the same
        # model with trainable="all" still trains everything
        self.entry_requires_grad = {id(p): p.requires_grad for p in model.parameters()}
        if config.trainable == "lora":
            add_lora(model, config.lora_rank, config.lora_alpha, config.lora_targets)
            model.to(device)
        trainable = model.trainable_parameters(config.trainable)
        trainable_ids = {id(p) for p in trainable}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable_ids)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.frozen = _frozen_roots(model)
        self.optimizer = torch.optim.Adam(
            self.params, lr=config.lr, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        embedder = _Embedder(model, self.on_features)
        if env.enabled:
            # the unused scale (e.g. HF's logit_scale_t) gets no gradient: tell DDP so
            embedder = nn.parallel.DistributedDataParallel(
                embedder,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.embedder = embedder
        self.progress: dict[str, Any] = {
            "step": 0,
            "epoch": 0,
            "step_in_epoch": 0,
            "loss_sum": 0.0,
            "loss_count": 0,
            "best_val": None,
            "history": [],
        }

    # -- the run --------------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        config, env, progress = self.config, self.env, self.progress
        checkpoint = find_checkpoint(self.out_dir) if resume else None
        if checkpoint is not None:
            progress.update(
                load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler, config)
            )
        if env.is_main:
            config.save(self.out_dir / "config.json")
        log = TrainLog(self.out_dir, progress["step"], enabled=env.is_main)
        try:
            self._epochs(log)
        finally:
            log.close()
        return self._finish()

    def _epochs(self, log: TrainLog) -> None:
        """Train until the last epoch ends or ``max_steps`` steps in total."""
        config, progress, table = self.config, self.progress, self.table
        while progress["epoch"] < config.epochs:
            epoch = progress["epoch"]
            plan = epoch_plan(
                table.curated, table.replay, config.batch_size, config.p_curated, config.seed, epoch
            )
            start = progress["step_in_epoch"]
            bar = tqdm(
                total=len(plan),
                initial=start,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not (config.progress and self.env.is_main),
                leave=False,
            )
            self.model.train()
            for module in self.frozen:
                module.eval()
            batches = self._batches(plan, start, progress["step"])
            for i, (rows, audio_in) in enumerate(batches, start=start):
                loss = self._train_step(rows, audio_in)
                progress["step"] += 1
                progress["step_in_epoch"] = i + 1
                progress["loss_sum"] += loss
                progress["loss_count"] += 1
                source = "curated" if rows[0] < len(table.curated) else "replay"
                log.step(progress["step"], epoch, source, loss, self._lr())
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if config.max_steps is not None and progress["step"] >= config.max_steps:
                    bar.close()
                    self._save()
                    return
                if progress["step"] % config.save_every == 0:
                    log.flush()
                    self._save()
            bar.close()
            self._end_epoch(log)
        self._save()

    def _train_step(self, rows: np.ndarray, audio_in) -> float:
        local = rows[self.env.local_slice(len(rows))]
        text_in = (
            self.text_feats[self.table.caption_of[local]]
            if self.on_features
            else [self.table.pairs.text[r] for r in local]
        )
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            audio_emb, text_emb, scale = self.embedder(audio_in, text_in)
        loss = self._loss(rows, audio_emb, text_emb, scale, audio_in, self.env)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def _loss(
        self,
        rows: np.ndarray,
        audio_emb: torch.Tensor,
        text_emb: torch.Tensor,
        scale: torch.Tensor,
        audio_in,
        env: DistEnv,
    ) -> torch.Tensor:
        """The configured loss over the global batch ``rows`` from this process's slice."""
        config, table = self.config, self.table
        positives = teacher_audio = teacher_text = None
        if config.loss == "multipos":
            positives = positive_mask(
                [table.pairs.text[r] for r in rows],
                [table.pairs.audio[r] for r in rows],
                None if table.pairs.classes is None else [table.pairs.classes[r] for r in rows],
            )
        elif config.loss == "soft":
            teacher_text = self.teacher_text[table.caption_of[rows]]
            if self.teacher_audio is not None:
                teacher_audio = self.teacher_audio[table.clip_of[rows]]
            else:
                with torch.no_grad(), self.autocast():
                    teacher_audio = gather(self.teacher.audio_embeddings(audio_in).float(), env)
        return batch_loss(
            config.loss,
            audio_emb,
            text_emb,
            scale,
            env,
            teacher_audio=teacher_audio,
            teacher_text=teacher_text,
            positives=positives,
            beta=config.beta,
            normalize_targets=config.normalize_targets,
        )

    def _batches(self, plan: list[np.ndarray], start: int, first_step: int):
        """(global rows, this process's audio input) for each step of ``plan`` from ``start``;
        ``first_step`` is the global step of ``plan[start]`` (it seeds the random crops)."""
        env, table = self.env, self.table
        plan = [rows[: len(rows) // env.world_size * env.world_size] for rows in plan[start:]]
        if self.on_features:
            for rows in plan:
                yield rows, self.audio_feats[table.clip_of[rows[env.local_slice(len(rows))]]]
            return
        keys = []
        for k, rows in enumerate(plan):
            local = env.local_slice(len(rows))
            slots = range(len(rows))[local]
            keys.append([(int(table.clip_of[rows[s]]), first_step + k, s) for s in slots])
        loader = clip_loader(self.clips, keys, self.config.num_workers, self.config.seed)
        for rows, waves in zip(plan, loader, strict=True):
            yield rows, waves.to(self.device)

    def _end_epoch(self, log: TrainLog) -> None:
        progress, config = self.progress, self.config
        train_loss = progress["loss_sum"] / max(progress["loss_count"], 1)
        val_loss = self._held_out_loss() if len(self.table.val) else None
        self.scheduler.step(val_loss if val_loss is not None else train_loss)
        record = {
            "epoch": progress["epoch"] + 1,
            "step": progress["step"],
            "train_loss": train_loss,
            "val_loss": val_loss,
            "lr": self._lr(),
        }
        progress["history"].append(record)
        log.epoch(record)
        if (
            config.keep == "best_val"
            and val_loss is not None
            and (progress["best_val"] is None or val_loss < progress["best_val"])
        ):
            progress["best_val"] = val_loss
            if self.env.is_main:
                save_student(self.model, self.out_dir / BEST)
        progress.update(epoch=progress["epoch"] + 1, step_in_epoch=0, loss_sum=0.0, loss_count=0)

    @torch.no_grad()
    def _held_out_loss(self) -> float:
        """Mean loss over the held-out curated pairs in fixed crops, in eval mode, unsharded."""
        self.model.eval()
        rows_all, size = self.table.val, self.config.batch_size
        local_env = DistEnv()
        total, count = 0.0, 0
        for s in range(0, len(rows_all), size):
            rows = rows_all[s : s + size]
            if len(rows) < 2:
                break
            clip_idx = self.table.clip_of[rows]
            if self.on_features:
                audio_in = self.audio_feats[clip_idx]
                text_in = self.text_feats[self.table.caption_of[rows]]
                audio_emb, text_emb = self.model.audio_head(audio_in), self.model.text_head(text_in)
            else:
                audio_in = torch.stack([self.clips[(int(c), -1, 0)] for c in clip_idx]).to(
                    self.device
                )
                with self.autocast():
                    audio_emb = self.model.audio_embeddings(audio_in)
                    text_emb = self.model.text_embeddings([self.table.pairs.text[r] for r in rows])
            loss = self._loss(
                rows, audio_emb, text_emb, self.model.logit_scale, audio_in, local_env
            )
            total += float(loss) * len(rows)
            count += len(rows)
        return total / max(count, 1)

    def _save(self) -> None:
        if self.env.is_main:
            save_checkpoint(
                self.out_dir, self.model, self.optimizer, self.scheduler, self.progress, self.config
            )
        barrier(self.env)

    def _finish(self) -> TrainResult:
        model, config = self.model, self.config
        if config.keep == "best_val" and (self.out_dir / BEST).exists():
            load_student(model, self.out_dir / BEST)
        if has_lora(model):
            merge_lora(model)
        if self.start is not None:
            interpolate_weights(model, self.start, config.wise_alpha)
        for p in model.parameters():
            p.requires_grad_(self.entry_requires_grad.get(id(p), p.requires_grad))
        model.eval()
        if hasattr(model, "record_fine_tune"):
            model.record_fine_tune(self._history_entry())
        model_dir = None
        if self.env.is_main:
            model_dir = model.save(self.out_dir / "model")
        barrier(self.env)
        return TrainResult(
            model,
            self.out_dir,
            model_dir,
            self.progress["step"],
            self.progress["epoch"],
            list(self.progress["history"]),
            config,
        )

    # -- helpers --------------------------------------------------------------------------------
    def _history_entry(self) -> dict:
        """What this fit did, for the model's own history: settings and counts, no paths (a
        model folder is shared between machines; ``extra`` is free-form and may hold paths)."""
        from claptune import __version__

        settings = {
            k: v
            for k, v in self.config.to_dict().items()
            if k not in ("device", "progress", "num_workers", "save_every", "extra")
        }
        return {
            "by": "claptune train",
            "claptune_version": __version__,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "n_curated_pairs": len(self.table.curated),
            "n_replay_pairs": len(self.table.replay),
            "steps": int(self.progress["step"]),
            "epochs": int(self.progress["epoch"]),
            "config": settings,
        }

    def autocast(self):
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @torch.no_grad()
    def _encode_clips(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        size = self.config.batch_size
        keys = [
            [(i, -1, 0) for i in range(s, min(s + size, len(self.table.clips)))]
            for s in range(0, len(self.table.clips), size)
        ]
        out = [
            fn(w.to(self.device)).float()
            for w in clip_loader(self.clips, keys, self.config.num_workers, self.config.seed)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def _encode_captions(self, fn: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        captions, size = self.table.captions, self.config.batch_size
        return torch.cat(
            [fn(captions[s : s + size]).float() for s in range(0, len(captions), size)]
        )


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``model``'s floating-point weights and buffers, by name (kept off the
    accelerator: it is read once, at the end of training)."""
    return {
        k: v.detach().to("cpu", copy=True)
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }


@torch.no_grad()
def interpolate_weights(model: nn.Module, start: dict[str, torch.Tensor], alpha: float) -> None:
    """Weight-space ensemble (WiSE-FT, Wortsman et al. 2022): every floating-point weight of
    ``model`` that ``start`` names becomes ``alpha * now + (1 - alpha) * start``, in place.
    Weights that did not train are equal in both and stay as they are; a weight shared by
    several modules is interpolated once."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())  # no duplicates
    for name, value in tensors:
        before = start.get(name)
        if before is None or before.shape != value.shape or not value.is_floating_point():
            continue
        value.copy_(alpha * value + (1.0 - alpha) * before.to(value.device, value.dtype))


def batch_loss(
    loss: str,
    audio_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    env: DistEnv,
    *,
    teacher_audio: torch.Tensor | None = None,
    teacher_text: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
    beta: float = 0.3,
    normalize_targets: bool = False,
) -> torch.Tensor:
    """``loss`` (hard | soft | multipos) over the global batch, from this process's slice.

    ``audio_emb``/``text_emb`` (b, D) are this process's student embeddings; they are
    gathered with gradients into the global (B, D). ``teacher_*`` (B, D) and ``positives``
    (B, B) already describe the global batch.
    """
    audio_emb = gather_with_grad(audio_emb.float(), env)
    text_emb = gather_with_grad(text_emb.float(), env)
    logits_audio_text = logit_scale.float() * audio_emb @ text_emb.t()
    if loss == "hard":
        return hard_contrastive_loss(logits_audio_text)
    if loss == "multipos":
        return multi_positive_contrastive_loss(logits_audio_text, positives)
    if loss == "soft":
        return soft_contrastive_loss(
            logits_audio_text, teacher_audio, teacher_text, beta, normalize_targets
        )
    raise ValueError(f"unknown loss {loss!r}")


def _batched(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int
) -> torch.Tensor:
    return torch.cat([fn(x[s : s + size]).float() for s in range(0, len(x), size)])


def heads_train_on_features(model: AudioTextModel, config: TrainConfig) -> bool:
    """Whether ``fit`` trains ``model`` on frozen features (the fast path, which reads a
    ``FeatureStore``): only heads train, on fixed crops, and the model splits."""
    return (
        config.crop == "fixed"
        and model.supports_feature_cache
        and config.trainable != "lora"
        and _heads_only(model, config.trainable)
    )


def _heads_only(model: AudioTextModel, trainable: str) -> bool:
    """True if every parameter that would train belongs to the projection heads (a model
    whose encoders are frozen by construction, such as the default model, counts even with
    ``trainable="all"``)."""
    heads = {id(p) for p in model.projection_parameters()}
    return all(id(p) in heads for p in model.trainable_parameters(trainable))


def _frozen_roots(model: nn.Module) -> list[nn.Module]:
    """The outermost sub-modules whose parameters are all frozen.

    They run in eval mode while the rest trains: train() would update their batch-norm
    statistics and apply their dropout, so they would no longer be the frozen encoder.
    """
    roots: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(r + ".") for r in roots):
            continue
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            roots.append(name)
    return [model.get_submodule(name) for name in roots]


def _device(config: TrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = ["TrainResult", "batch_loss", "fit", "heads_train_on_features"]
