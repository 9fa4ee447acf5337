"""MS-CLAP's configuration and its spectrogram front end, shared by both audio encoders.

``MSClapConfig`` fixes an architecture and its preprocessing. The front end is torchlibrosa's
STFT as two 1-D convolutions with windowed DFT kernels (``stft.conv_real`` / ``conv_imag``,
reflect-padded, centred), power 2, a Slaney mel bank (``melW``) and ``10 log10(max(x, 1e-10))``;
the kernels and the bank are frozen parameters read from the checkpoint, as in the original.
CNN14 (``msclap_nets``) and HTSAT (``msclap_htsat``) both build on it, so neither imports the
other's module for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)
LOG_AMIN = 1e-10  # torchlibrosa power_to_db amin (ref 1.0, no top_db)


@dataclass
class MSClapConfig:
    """Everything that fixes an MS-CLAP architecture and its preprocessing."""

    audio_encoder: str = "cnn14"  # "cnn14" (2022) or "htsat" (2023)
    sample_rate: int = 44100
    duration: float = 5.0  # seconds per window: 5 (2022), 7 (2023)
    window_size: int = 1024  # STFT n_fft = window length
    hop_size: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    classes_num: int = 527  # AudioSet head, kept for strict loading
    out_emb: int = 2048  # audio feature size before projection
    cnn14_channels: tuple[int, ...] = CNN14_CHANNELS
    text_encoder: str = "bert"  # "bert" ([CLS]) or "gpt2" (last non-pad token)
    text_config: dict[str, Any] = field(default_factory=dict)  # transformers config.to_dict()
    transformer_embed_dim: int = 768
    text_len: int = 100  # tokens; captions are padded to it, as the original does
    d_proj: int = 1024
    htsat_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.cnn14_channels = tuple(self.cnn14_channels)
        if self.audio_encoder not in ("cnn14", "htsat"):
            raise ValueError(f"audio_encoder must be cnn14 or htsat, not {self.audio_encoder!r}")
        if self.text_encoder not in ("bert", "gpt2"):
            raise ValueError(f"text_encoder must be bert or gpt2, not {self.text_encoder!r}")
        if self.audio_encoder == "cnn14" and len(self.cnn14_channels) != 6:
            raise ValueError("cnn14_channels needs six widths")
        if not 0 < self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 < fmin < fmax <= sample_rate / 2")
        if self.duration <= 0 or self.text_len <= 0:
            raise ValueError("duration and text_len must be positive")

    @property
    def clip_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cnn14_channels"] = list(self.cnn14_channels)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MSClapConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown MS-CLAP config keys: {sorted(unknown)}")
        return cls(**data)


# -- front end ---------------------------------------------------------------------------------
def slaney_mel_bank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """``librosa.filters.mel`` (Slaney scale and area norm) transposed: (n_fft // 2 + 1, n_mels)."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=fmin,
        max_frequency=fmax,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    ).astype(np.float32)


class _DftConv(nn.Module):
    """torchlibrosa ``STFT``: the windowed DFT as two strided convolutions."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        bins = n_fft // 2 + 1
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
        window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, librosa get_window(fftbins=True)
        k = np.arange(n_fft)
        dft = np.exp(-2j * np.pi * np.outer(k, k[:bins]) / n_fft) * window[:, None]
        with torch.no_grad():
            self.conv_real.weight.copy_(torch.tensor(dft.real.T, dtype=torch.float32)[:, None])
            self.conv_imag.weight.copy_(torch.tensor(dft.imag.T, dtype=torch.float32)[:, None])
        self.requires_grad_(False)

    def forward(self, waveforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(waveforms[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        # (B, bins, frames) -> (B, 1, frames, bins)
        return (
            self.conv_real(x)[:, None].transpose(2, 3),
            self.conv_imag(x)[:, None].transpose(2, 3),
        )


class PowerSpectrogram(nn.Module):
    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.stft = _DftConv(n_fft, hop_length)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, frames, n_fft // 2 + 1) power."""
        real, imag = self.stft(waveforms)
        return real**2 + imag**2


class LogMel(nn.Module):
    def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
        super().__init__()
        bank = slaney_mel_bank(sample_rate, n_fft, n_mels, fmin, fmax)
        self.melW = nn.Parameter(torch.tensor(bank), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        """(..., n_fft // 2 + 1) power -> (..., n_mels) dB."""
        return 10.0 * torch.log10(torch.matmul(power, self.melW).clamp(min=LOG_AMIN))
