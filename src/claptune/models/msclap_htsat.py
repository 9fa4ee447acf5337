"""MS-CLAP 2023's audio encoder: HTSAT behind msclap's own log-mel front end.

MS-CLAP 2023 uses Ke Chen's HTSAT (``msclap.models.htsat``), the same Swin-transformer code
that LAION-CLAP uses and that transformers ports as ``ClapAudioEncoder``. So the transformer
part is ``ClapAudioEncoder`` (its ``pooler_output`` is HTSAT's ``latent_output``: the mean of
the final normalised tokens), and only the names differ; ``from_original_names`` /
``to_original_names`` translate between the published layout
(``audio_encoder.base.htsat.layers.0.blocks.0.attn.qkv.weight``) and this one
(``...htsat.encoder.layers.0.blocks.0.attention.self.query.weight``), so published files load
and saved students are written back in the published layout.

The front end is msclap's, frozen parameters read from the checkpoint: a torchlibrosa STFT
(1024 / hop 320) and a mel bank msclap builds from HTSAT's own config module (32 kHz, 50 Hz to
14 kHz) although the audio arrives at 44.1 kHz: a quirk of the release that its weights were
trained with, kept as is. A 7 s window gives 965 frames, which HTSAT stretches (bicubic) to 1024.
The AudioSet head (``tscam_conv``, ``head``) is kept for strict loading and not run.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from claptune.models.hf_clap import fuse_window_attention
from claptune.models.msclap_frontend import LogMel, MSClapConfig, PowerSpectrogram

PREFIX = "audio_encoder.base.htsat."

# msclap's HTSAT config module (models/config.py): what the published 2023 weights use.
PUBLISHED_HTSAT: dict[str, Any] = {
    "spec_size": 256,
    "patch_size": 4,
    "patch_stride": [4, 4],
    "patch_embeds_hidden_size": 96,
    "depths": [2, 2, 6, 2],
    "num_attention_heads": [4, 8, 16, 32],
    "window_size": 8,
    "num_classes": 527,
    "mel_sample_rate": 32000,
    "mel_fmax": 14000.0,
}

# original -> ClapAudioEncoder name fragments, applied in order (as for LAION-CLAP)
_TO_HF = (
    ("attn.proj", "attention.output.dense"),
    ("attn.", "attention.self."),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("norm1", "layernorm_before"),
    ("norm2", "layernorm_after"),
)
# the inverse, ordered so that "attention.output.dense" is not taken for an MLP "output.dense"
_FROM_HF = tuple((new, old) for old, new in _TO_HF)
_KEPT = ("spectrogram_extractor.", "logmel_extractor.", "tscam_conv.", "head.")


def published_htsat_config() -> dict[str, Any]:
    return dict(PUBLISHED_HTSAT)


def clap_audio_config(config: MSClapConfig):
    from transformers import ClapAudioConfig

    h = config.htsat_config
    hidden = h["patch_embeds_hidden_size"] * 2 ** (len(h["depths"]) - 1)
    return ClapAudioConfig(
        spec_size=h["spec_size"],
        patch_size=h["patch_size"],
        patch_stride=list(h["patch_stride"]),
        patch_embeds_hidden_size=h["patch_embeds_hidden_size"],
        depths=list(h["depths"]),
        num_attention_heads=list(h["num_attention_heads"]),
        window_size=h["window_size"],
        num_mel_bins=config.mel_bins,
        hidden_size=hidden,
        enable_fusion=False,
    )


class HTSAT(nn.Module):
    def __init__(self, config: MSClapConfig):
        super().__init__()
        from transformers.models.clap.modeling_clap import ClapAudioEncoder

        h = config.htsat_config
        audio_config = clap_audio_config(config)
        self.spectrogram_extractor = PowerSpectrogram(config.window_size, config.hop_size)
        self.logmel_extractor = LogMel(
            h["mel_sample_rate"], config.window_size, config.mel_bins, config.fmin, h["mel_fmax"]
        )
        self.encoder = ClapAudioEncoder(audio_config)
        fuse_window_attention(self.encoder)  # inference only; training runs transformers' own
        features = audio_config.hidden_size
        grid = h["spec_size"] // 2 ** (len(h["depths"]) - 1) // h["patch_stride"][0]
        freq_ratio = h["spec_size"] // config.mel_bins
        self.tscam_conv = nn.Conv2d(
            features, h["num_classes"], kernel_size=(grid // freq_ratio, 3), padding=(0, 1)
        )
        self.head = nn.Linear(h["num_classes"], h["num_classes"])

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, hidden) ``latent_output``."""
        mel = self.logmel_extractor(self.spectrogram_extractor(waveforms))
        return self.encoder(input_features=mel).pooler_output


class HTSATWrapper(nn.Module):
    """``msclap.models.htsat.HTSATWrapper``: the module that holds ``htsat``."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.htsat = HTSAT(config)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.htsat(waveforms)


def from_original_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Published MS-CLAP 2023 layout -> this module's names (qkv split into query/key/value).
    Keys outside the HTSAT, and a state dict already in this layout, pass through."""
    if f"{PREFIX}bn0.weight" not in state:
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith(PREFIX) or key[len(PREFIX) :].startswith(_KEPT):
            out[key] = value
            continue
        rest = key[len(PREFIX) :].replace("bn0.", "batch_norm.", 1)
        for old, new in _TO_HF:
            rest = rest.replace(old, new)
        if ".qkv." in rest:
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{PREFIX}encoder.{rest.replace('qkv', part)}"] = chunk
        else:
            out[f"{PREFIX}encoder.{rest}"] = value
    return out


def to_original_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``from_original_names``: this module's names -> the published layout."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    enc = f"{PREFIX}encoder."
    for key, value in state.items():
        if not key.startswith(enc):
            out[key] = value
            continue
        rest = key[len(enc) :].replace("batch_norm.", "bn0.", 1)
        for old, new in _FROM_HF:
            rest = rest.replace(old, new)
        if m := re.match(r"(.*)\.attn\.(query|key|value)\.(weight|bias)$", rest):
            qkv.setdefault(f"{PREFIX}{m.group(1)}.attn.qkv.{m.group(3)}", {})[m.group(2)] = value
        else:
            out[PREFIX + rest] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out
