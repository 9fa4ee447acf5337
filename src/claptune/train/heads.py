"""Train the default model's projection heads on a captioned corpus (``claptune pretrain``).

The recipe (``claptune/recipes/default.json``, read into ``PretrainConfig``) fixes everything.
Every stage is the shared one: the corpus reader of ``claptune.data``, the frozen features of
``claptune.features``, the multi-positive loss of ``claptune.losses`` and the R@k of
``claptune.evaluate.retrieval``.

1. Corpus: a ``manifest.csv`` with ``path`` and ``caption`` columns (the captioned-sfx layout,
   ``claptune.data.load_captioned_corpus``). A fixed held-out part is chosen by hashing each
   *caption* with a salt, so identical captions never straddle the split; its ids (paths
   relative to the manifest's folder) are written with the model. Only the held-out retrieval
   scores select anything; no target-task audio or labels are ever read here.
2. Frozen features from the feature store (kept on disk across runs): up to
   ``max_windows_per_clip`` evenly spaced windows of every clip through aisfx, every caption
   rewrite (``caption_templates`` over the normalised caption) through MiniLM.
3. Heads trained on them: each epoch draws one window per clip (long clips give several
   views over epochs) and one caption rewrite per clip; the loss is the symmetric
   multi-positive contrastive loss with every clip of the batch sharing a caption counted as a
   positive, so repeated captions ("swords clashing" x15) are not pushed apart.
4. After each epoch, retrieval on the held-out part (clip = mean of its window embeddings;
   each clip's caption among the distinct held-out captions; ties count against the model);
   the epoch with the best mean recall is kept (``select = "best_heldout"``) or the last one.

Why a loop of its own rather than ``claptune.train.fit`` (the one trainer of fine-tuning):
``fit`` adapts a *student from a teacher*: it starts from trained weights, mixes curated pairs
with replay, builds soft targets from the frozen teacher, stops on a held-out curated loss
(Adam, reduce-on-plateau) and resumes from checkpoints under torchrun. Pretraining starts the
heads from random initialisation with no teacher at all, draws a fresh window and caption
rewrite per clip each epoch, smooths targets over caption similarity, trains each ensemble
member separately, and selects epochs by held-out *retrieval*; from random weights a plateau
schedule stalls within the recipe's budget, so it uses AdamW with warm-up and cosine decay.
None of ``fit``'s machinery applies and none of this belongs in ``fit``; both share the losses
(``claptune.losses``), the feature store and the retrieval metric. The shipped weights are
reproduced exactly by this loop (tests/test_default_model.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from claptune.data import load_captioned_corpus
from claptune.errors import ClaptuneError
from claptune.evaluate.retrieval import mean_recall, retrieval_metrics
from claptune.features import FeatureStore
from claptune.losses import contrastive_loss_with_targets, multi_positive_contrastive_loss

logger = logging.getLogger(__name__)

SELECT = ("last", "best_heldout")
DEFAULT_RECIPE = "default.json"
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


@dataclass
class PretrainConfig:
    """One pretraining recipe; validated, saved beside the model it trains."""

    model: dict[str, Any] = field(default_factory=dict)  # DefaultModelConfig fields
    heldout_fraction: float = 0.1  # share of distinct captions kept out for model selection
    split_salt: str = "claptune-default-v1"  # changes the held-out part; recorded with the run
    caption_templates: list[str] = field(default_factory=lambda: ["{caption}"])
    max_windows_per_clip: int = 8  # long clips: at most this many windows (evenly spaced)
    epochs: int = 40
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: int = 2  # linear warm-up, then cosine decay to 0
    learn_logit_scale: bool = True  # False keeps the initial temperature fixed
    # Share of each target row given to captions similar to the clip's own (softmax of MiniLM
    # caption cosines / caption_smoothing_tau): "a man groaning in pain" is not a negative of
    # "a man crying out in pain". 0 = only identical captions are positives.
    caption_smoothing: float = 0.0
    caption_smoothing_tau: float = 0.05
    select: str = "best_heldout"
    seed: int = 0
    max_clips: int | None = None  # use only the first N clips of the manifest (tests, smoke runs)

    def __post_init__(self):
        from claptune.models.default import DefaultModelConfig

        DefaultModelConfig.from_dict(self.model)  # validates the model fields early
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError("heldout_fraction must be in (0, 1)")
        if not self.caption_templates or any("{caption}" not in t for t in self.caption_templates):
            raise ValueError("caption_templates must be non-empty and each contain {caption}")
        if self.max_windows_per_clip < 1 or self.epochs < 1 or self.batch_size < 2:
            raise ValueError("max_windows_per_clip, epochs >= 1 and batch_size >= 2 required")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise ValueError("lr must be positive, weight_decay and warmup_epochs non-negative")
        if not 0.0 <= self.caption_smoothing < 1.0 or self.caption_smoothing_tau <= 0:
            raise ValueError("caption_smoothing must be in [0, 1) and its tau positive")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, not {self.select!r}")
        if self.max_clips is not None and self.max_clips < 2:
            raise ValueError("max_clips must be at least 2")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"comment"}
        if unknown:
            raise ClaptuneError(f"unknown recipe keys: {sorted(unknown)}")
        try:
            return cls(**{k: v for k, v in data.items() if k != "comment"})
        except (TypeError, ValueError) as err:
            raise ClaptuneError(f"invalid recipe: {err}") from None

    @classmethod
    def from_recipe(cls, recipe: str | Path = DEFAULT_RECIPE, **overrides: Any) -> PretrainConfig:
        """Read a recipe JSON (a path, or a name in claptune/recipes) with field overrides."""
        path = Path(recipe)
        if not path.is_file():
            path = RECIPES_DIR / str(recipe)
        if not path.is_file():
            raise ClaptuneError(f"no recipe {recipe!r} (a file or a name in {RECIPES_DIR})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ClaptuneError(f"recipe {path} is not valid JSON: {err}") from None
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class CaptionedCorpus:
    ids: list[str]  # the manifest's path column
    audio: list[Path]
    captions: list[str]
    heldout: np.ndarray  # (N,) bool


@dataclass
class PretrainResult:
    out_dir: Path
    best_epoch: int | list[int]  # the kept epoch (per member for an ensemble)
    heldout: dict[str, float]  # retrieval metrics of the kept heads on the held-out part
    history: list[dict[str, float]]
    seconds: float


# -- corpus ----------------------------------------------------------------------------------
def normalize_caption(caption: str) -> str:
    """Lowercase, collapse whitespace, drop trailing punctuation: "A washing machine." and
    "a washing machine" become one caption."""
    return re.sub(r"\s+", " ", caption.strip().lower()).rstrip(" .!")


def heldout_mask(captions: Sequence[str], fraction: float, salt: str) -> np.ndarray:
    """True for captions whose salted hash falls in the held-out fraction."""

    def bucket(caption: str) -> float:
        digest = hashlib.sha256(f"{salt}|{normalize_caption(caption)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    return np.array([bucket(c) < fraction for c in captions], dtype=bool)


def read_corpus(root: str | Path, config: PretrainConfig) -> CaptionedCorpus:
    """The manifest's clips and captions, first ``max_clips`` only if set, with the split."""
    root = Path(root).expanduser()
    manifest = root if root.suffix.lower() == ".csv" else root / "manifest.csv"
    if not manifest.is_file():
        raise ClaptuneError(f"no manifest.csv at {root}")
    corpus = load_captioned_corpus(manifest)
    n = min(len(corpus), config.max_clips or len(corpus))
    audio, captions = corpus.audio[:n], corpus.captions[:n]
    ids = [
        a.relative_to(manifest.parent).as_posix() if a.is_relative_to(manifest.parent) else str(a)
        for a in audio
    ]
    mask = heldout_mask(captions, config.heldout_fraction, config.split_salt)
    if mask.all() or not mask.any():
        # Tiny corpora (tests) can hash to one side; keep at least one clip on each.
        mask = np.zeros(n, dtype=bool)
        mask[-1] = True
    return CaptionedCorpus(ids, audio, captions, mask)


def text_feature_table(
    model, captions: Sequence[str], templates: Sequence[str], batch_size: int = 256
) -> np.ndarray:
    """(n_templates, N, 384) frozen MiniLM features of every rewrite of every caption.

    Computed here in fixed chunks of the full list, not through the store (which computes
    text in memory only): MiniLM's output depends in its last bits on a batch's padding, and
    these chunks are what make the shipped heads reproducible bit for bit.
    """
    out = []
    for template in templates:
        texts = [template.format(caption=normalize_caption(c)) for c in captions]
        chunks = [
            model.text_features(texts[i : i + batch_size]).cpu().numpy()
            for i in range(0, len(texts), batch_size)
        ]
        out.append(np.concatenate(chunks).astype(np.float32))
    return np.stack(out)


def heldout_retrieval(
    audio_emb: np.ndarray, text_emb: np.ndarray, caption_of_clip: np.ndarray
) -> dict[str, float]:
    """R@1/5/10 of both directions and their mean (``mean_R``) on the held-out part: clip i's
    caption is text row ``caption_of_clip[i]`` (each distinct caption once)."""
    metrics = retrieval_metrics(
        audio_emb, text_emb, ks=(1, 5, 10), audio_text_index=caption_of_clip
    )
    recall = {k: v for k, v in metrics.items() if "_R@" in k}
    return {**recall, "mean_R": mean_recall(recall)}


# -- training ----------------------------------------------------------------------------------
def caption_loss(
    logits_audio_text: torch.Tensor,
    caption_ids: torch.Tensor,
    caption_feats: torch.Tensor | None = None,
    smoothing: float = 0.0,
    tau: float = 0.05,
) -> torch.Tensor:
    """The multi-positive loss (``claptune.losses``) with every pair sharing a caption as a
    positive; with ``smoothing`` its targets are mixed with a softmax over the frozen
    captions' similarities (the same mixed rows for both directions)."""
    positives = caption_ids[:, None] == caption_ids[None, :]
    if smoothing <= 0:
        return multi_positive_contrastive_loss(logits_audio_text, positives)
    targets = positives.float() / positives.float().sum(dim=1, keepdim=True)
    similar = F.softmax(caption_feats @ caption_feats.T / tau, dim=1)
    targets = (1 - smoothing) * targets + smoothing * similar
    return contrastive_loss_with_targets(logits_audio_text, targets, targets)


def embed_heldout(
    model, audio_feats: list[np.ndarray], text_feats: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Clip embeddings (mean of window embeddings, renormalised) and caption embeddings."""
    model.eval()
    with torch.no_grad():
        clips = []
        for feats in audio_feats:
            emb = model.audio_head(torch.from_numpy(feats)).mean(dim=0)
            clips.append(F.normalize(emb, dim=0))
        text = model.text_head(torch.from_numpy(text_feats))
    return torch.stack(clips).numpy(), text.numpy()


def train_heads(
    model,
    audio_feats: list[np.ndarray],
    text_table: np.ndarray,
    caption_ids: np.ndarray,
    config: PretrainConfig,
    heldout: tuple[list[np.ndarray], np.ndarray, np.ndarray] | None = None,
    log: Callable[[str], None] = logger.info,
) -> tuple[int, list[dict[str, float]]]:
    """Train the heads in place; returns the kept epoch and the per-epoch history."""
    # Small matrices: one thread avoids the synchronisation cost that dominates on a busy box.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_heads(model, audio_feats, text_table, caption_ids, config, heldout, log)
    finally:
        torch.set_num_threads(threads)


def _train_heads(model, audio_feats, text_table, caption_ids, config, heldout, log):
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    params = [
        p
        for p in model.projection_parameters()
        if config.learn_logit_scale or p is not model.log_logit_scale
    ]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    n = len(audio_feats)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    total = steps_per_epoch * config.epochs
    warmup = steps_per_epoch * config.warmup_epochs

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    ids = torch.from_numpy(caption_ids)
    history: list[dict[str, float]] = []
    best_epoch, best_score, best_state = config.epochs, -1.0, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        window_pick = np.stack([f[rng.integers(len(f))] for f in audio_feats])
        template_pick = rng.integers(text_table.shape[0], size=n)
        audio_x = torch.from_numpy(window_pick)
        text_x = torch.from_numpy(text_table[template_pick, np.arange(n)])
        order = torch.randperm(n, generator=generator)
        losses = []
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            audio_emb = model.audio_head(audio_x[idx])
            text_emb = model.text_head(text_x[idx])
            logits_audio_text = model.logit_scale * audio_emb @ text_emb.T
            loss = caption_loss(
                logits_audio_text,
                ids[idx],
                text_x[idx],
                config.caption_smoothing,
                config.caption_smoothing_tau,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        record = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "logit_scale": float(model.logit_scale.item()),
        }
        if heldout is not None:
            h_audio, h_text, h_groups = heldout
            audio_emb, text_emb = embed_heldout(model, h_audio, h_text)
            record.update(heldout_retrieval(audio_emb, text_emb, h_groups))
            if config.select == "best_heldout" and record["mean_R"] > best_score:
                best_epoch, best_score = epoch, record["mean_R"]
                best_state = {k: v.clone() for k, v in model.head_state_dict().items()}
        history.append(record)
        log(
            " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
                if k in ("epoch", "loss", "logit_scale", "mean_R", "a2t_R@1", "t2a_R@1")
            )
        )
    if best_state is not None:
        model.load_head_state_dict(best_state)
    model.eval()
    return best_epoch, history


def member_seed(seed: int, member: int) -> int:
    """The training seed of ensemble member ``member`` of a recipe with ``seed`` (member 0
    trains exactly like a single-head recipe with that seed)."""
    return seed + 1000 * member


def pretrain(
    corpus_root: str | Path,
    out_dir: str | Path,
    config: PretrainConfig,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = logger.info,
    progress: bool = True,
) -> PretrainResult:
    """Train the default model's heads by ``config`` on the corpus and save it to ``out_dir``.

    With ``model.n_heads`` > 1, each ensemble member is trained on its own, exactly as a
    single-head recipe with seed ``member_seed(seed, i)`` (its own initialisation, batches and
    kept epoch), and the members are then joined; the held-out retrieval of the joined model
    is what gets recorded. ``cache_dir``: where the feature store keeps the frozen features
    between runs (None: in memory only).
    """
    from claptune.models.default import DefaultModel, DefaultModelConfig

    start = time.time()
    corpus = read_corpus(corpus_root, config)
    model_config = DefaultModelConfig.from_dict(config.model)
    n_members = model_config.n_heads
    member_config = DefaultModelConfig.from_dict({**config.model, "n_heads": 1})
    torch.manual_seed(config.seed)  # the heads' initialisation
    model = DefaultModel(member_config)
    log(f"corpus: {len(corpus.audio)} clips, {int(corpus.heldout.sum())} held out")
    store = FeatureStore(model, cache_dir=cache_dir, batch_size=32, progress=progress)
    audio_feats = [f.numpy() for f in store.clip_windows(corpus.audio, config.max_windows_per_clip)]
    caption_norm = [normalize_caption(c) for c in corpus.captions]
    index = {c: i for i, c in enumerate(sorted(set(caption_norm)))}
    caption_ids = np.array([index[c] for c in caption_norm])
    train_idx = np.flatnonzero(~corpus.heldout)
    held_idx = np.flatnonzero(corpus.heldout)
    text_table = text_feature_table(
        model, [corpus.captions[i] for i in train_idx], config.caption_templates
    )
    held_distinct = sorted({caption_norm[i] for i in held_idx})
    held_groups = np.array([held_distinct.index(caption_norm[i]) for i in held_idx])
    held_text = text_feature_table(model, held_distinct, ["{caption}"])[0]
    held_audio = [audio_feats[i] for i in held_idx]
    member_states, epochs, history = [], [], []
    for m in range(n_members):
        seed = member_seed(config.seed, m)
        if m > 0:
            torch.manual_seed(seed)
            model.reset_heads()
        prefix = f"member {m + 1}/{n_members} (seed {seed}): " if n_members > 1 else ""
        best_epoch, member_history = train_heads(
            model,
            [audio_feats[i] for i in train_idx],
            text_table,
            caption_ids[train_idx],
            dataclasses.replace(config, seed=seed),
            heldout=(held_audio, held_text, held_groups),
            log=lambda msg, p=prefix: log(p + msg),
        )
        epochs.append(best_epoch)
        history += [{"member": m, **r} if n_members > 1 else r for r in member_history]
        member_states.append(model.head_state_dict())
    if n_members > 1:
        model = DefaultModel(model_config)
        model.load_head_state_dict(join_members(member_states))
    kept_epoch = epochs[0] if n_members == 1 else epochs
    audio_emb, text_emb = embed_heldout(model, held_audio, held_text)
    heldout_metrics = heldout_retrieval(audio_emb, text_emb, held_groups)
    # the corpus folder's name only: a model folder carries no paths of the machine that made it
    model.metadata = {
        "trained_by": "claptune pretrain",
        "recipe": config.to_dict(),
        "corpus": Path(corpus_root).name,
        "n_train": int(len(train_idx)),
        "n_heldout": int(len(held_idx)),
        "best_epoch": kept_epoch,
        "heldout_retrieval": heldout_metrics,
        "heldout_ids": [corpus.ids[i] for i in held_idx],
    }
    out_dir = Path(out_dir)
    model.save(out_dir)
    _write_card(out_dir, corpus_root, config, heldout_metrics, kept_epoch, len(train_idx))
    (out_dir / "pretrain_history.json").write_text(json.dumps(history, indent=1) + "\n")
    seconds = time.time() - start
    log(
        f"saved {out_dir} (epoch{'s' if n_members > 1 else ''} "
        f"{', '.join(map(str, epochs))}, held-out mean recall "
        f"{heldout_metrics.get('mean_R', float('nan')):.4f}) in {seconds:.0f} s"
    )
    return PretrainResult(out_dir, kept_epoch, heldout_metrics, history, seconds)


def _write_card(
    out_dir: Path, corpus_root, config, heldout: dict, kept_epoch, n_train: int
) -> None:
    """The default model's card: its corpus, loss and held-out retrieval (no before: the
    heads start from random)."""
    from claptune.card import (
        DEFAULT_MODEL_LICENSE,
        BaseModel,
        CardInfo,
        CardResult,
        write_model_card,
    )

    corpus = Path(corpus_root).name
    results = [
        CardResult(
            dataset=corpus,
            dataset_name=f"{corpus} (held-out part)",
            after=v,
            split="held-out",
            metric=k,
            task="audio-text-retrieval",
            note="recall on the corpus's held-out clips",
        )
        for k, v in heldout.items()
        if isinstance(v, float)
    ]
    write_model_card(
        out_dir,
        CardInfo(
            made_by="claptune pretrain",
            base=BaseModel(
                license=DEFAULT_MODEL_LICENSE,
                description="the aisfx audio encoder and all-MiniLM-L6-v2 text encoder "
                "(frozen), with heads trained from random",
            ),
            datasets=[corpus],
            loss="multi-positive contrastive (heads only)",
            results=results,
            details={"kept epoch": kept_epoch, "training clips": n_train, "seed": config.seed},
            model_name="claptune default model heads",
        ),
    )


def join_members(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Head states of single-head models -> the state of their ensemble: each projection's
    weights go to ``<side>_projection.members.<i>.``; the logit scale is the members' mean
    (of the logarithm)."""
    joined: dict[str, torch.Tensor] = {}
    for i, state in enumerate(states):
        for key, value in state.items():
            side, _, rest = key.partition(".")
            if key == "log_logit_scale":
                continue
            joined[f"{side}.members.{i}.{rest}"] = value
    joined["log_logit_scale"] = torch.stack([s["log_logit_scale"] for s in states]).mean()
    return joined
