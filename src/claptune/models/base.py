"""The one interface every audio-text model in claptune implements.

A backend adapts one model family (Hugging Face CLAP, the embedded default model, MS-CLAP,
LAION-CLAP checkpoints) to this interface, so that embedding, curation, training and evaluation
never need to know which family they hold.

Two levels:
- differentiable forwards used by training: ``audio_embeddings(waveforms)`` on fixed-length
  windows and ``text_embeddings(texts)``, both (B, D) float32 L2-normalised tensors;
- frozen features and heads (``audio_features``/``audio_head``, ``text_features``/
  ``text_head``) where the family supports the feature cache.

Inference over files and captions is a function of the model, one layer up:
``claptune.embed.encode_audio(model, items)`` and ``encode_text(model, texts)`` return (B, D)
float32 L2-normalised NumPy arrays, batched, deterministic, with no grad. Clips longer than the
model's window are embedded as the renormalised mean of the embeddings of consecutive windows
(see ``claptune.audio.windows``); shorter ones are repeat-padded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

MODEL_MARKER = (
    "claptune_model.json"  # written by every save(); names the backend that reads it back
)

AudioItem = str | Path | np.ndarray  # a file path, or a 1-D float waveform at the model's rate


class AudioTextModel(nn.Module, ABC):
    """A contrastive audio-text model: audio and text mapped into one embedding space."""

    backend: ClassVar[str]  # key in the backend registry, stored in MODEL_MARKER

    sample_rate: int  # Hz the audio encoder expects
    clip_samples: int  # samples in one window the audio encoder sees

    @property
    def clip_seconds(self) -> float:
        return self.clip_samples / self.sample_rate

    # -- differentiable forwards (training) --------------------------------------------------
    @abstractmethod
    def audio_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Embed windows: (B, clip_samples) float32 at ``sample_rate`` -> (B, D) L2-normalised."""

    @abstractmethod
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed captions: B strings -> (B, D) L2-normalised."""

    @property
    @abstractmethod
    def logit_scale(self) -> torch.Tensor:
        """The scalar multiplier of cosine similarities (exp of the learnt log-scale, capped)."""

    # -- optional split into a frozen feature extractor and trainable heads --------------------
    # A backend whose encoders can stay frozen while only heads train exposes this split, so
    # the trainer can compute the frozen features once, cache them, and train the heads on the
    # cache: audio_embeddings(w) == audio_head(audio_features(w)) and likewise for text.
    supports_feature_cache: ClassVar[bool] = False

    def audio_features(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Frozen part of the audio tower: (B, clip_samples) -> (B, F_audio)."""
        raise NotImplementedError(f"{type(self).__name__} has no frozen audio feature split")

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen part of the text tower: B strings -> (B, F_text)."""
        raise NotImplementedError(f"{type(self).__name__} has no frozen text feature split")

    def audio_head(self, features: torch.Tensor) -> torch.Tensor:
        """Trainable part of the audio tower: (B, F_audio) -> (B, D) L2-normalised."""
        raise NotImplementedError(f"{type(self).__name__} has no audio head split")

    def text_head(self, features: torch.Tensor) -> torch.Tensor:
        """Trainable part of the text tower: (B, F_text) -> (B, D) L2-normalised."""
        raise NotImplementedError(f"{type(self).__name__} has no text head split")

    # -- which parameters train ---------------------------------------------------------------
    @abstractmethod
    def projection_parameters(self) -> list[nn.Parameter]:
        """Parameters of the projection heads (and the logit scale)."""

    def trainable_parameters(self, mode: str = "all") -> list[nn.Parameter]:
        """Parameters to optimise: ``all``, ``projections`` or ``lora`` (after ``add_lora``)."""
        if mode == "all":
            return [p for p in self.parameters() if p.requires_grad]
        if mode == "projections":
            return self.projection_parameters()
        if mode == "lora":
            params = [p for n, p in self.named_parameters() if "lora_" in n]
            if not params:
                raise ValueError("no LoRA parameters: call add_lora() first")
            return params + self.projection_parameters()
        raise ValueError(f"unknown trainable mode {mode!r}: use all, projections or lora")

    # -- persistence ---------------------------------------------------------------------------
    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (with MODEL_MARKER) so that ``load`` reads it back."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path, **kwargs: Any) -> AudioTextModel:
        """Read a model written by ``save`` (or the backend's native format)."""

    @classmethod
    def from_source(cls, source: str, **kwargs: Any) -> AudioTextModel:
        """Build from a registered source (a hub id, a packaged weights file, ...)."""
        raise NotImplementedError(f"{cls.__name__} has no registered sources")

    @classmethod
    def recognizes(cls, directory: Path) -> bool:
        """True if ``directory`` holds this backend's native format without a MODEL_MARKER."""
        return False

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines the embeddings: backend, weights fingerprint, preprocessing.

        Used as the key of the embedding cache, so that another model or another
        preprocessing never reuses stale vectors.
        """

    # -- moved one layer up: say where, rather than fail with a bare AttributeError -------------
    def encode_audio(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AttributeError(
            "model.encode_audio(items) moved to claptune.embed: "
            "encode_audio(model, items).embeddings"
        )

    def encode_text(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AttributeError(
            "model.encode_text(texts) moved to claptune.embed: encode_text(model, texts)"
        )
