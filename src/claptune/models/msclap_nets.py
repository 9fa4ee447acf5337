"""The networks of Microsoft CLAP (MS-CLAP), rebuilt with the published parameter names.

``MSClapNet`` holds exactly the modules of ``msclap.models.clap.CLAP`` under the same names
(``audio_encoder.base``, ``audio_encoder.projection``, ``caption_encoder.base``,
``caption_encoder.projection``, ``logit_scale``), so ``CLAP_weights_2022.pth`` and state dicts
written by the ``msclap`` package load strictly, and a saved claptune student loads back into
``msclap`` too. Dropout sits where the original has it (it trains the same way); the
AudioSet classification output is not computed (its layer is kept so the published weights
load strictly).

- Front end and configuration: ``claptune.models.msclap_frontend`` (shared with HTSAT).
- CNN14 (PANNs): BatchNorm over mel bins, six conv blocks, mean over frequency, max + mean
  over time, ``fc1`` + ReLU -> the 2048-d clip embedding. Channel widths are configurable so
  tests can build a tiny one; the published model uses (64, 128, 256, 512, 1024, 2048).
- Text: a transformers ``BertModel`` ([CLS] hidden state) or ``GPT2Model`` (hidden state of the
  last non-pad token, found as the original does: the count of ids different from 0, minus 1).
- Projection: Linear -> GELU -> Linear -> Dropout, residual, LayerNorm.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from claptune.models.fold import conv_bn
from claptune.models.msclap_frontend import LogMel, MSClapConfig, PowerSpectrogram
from claptune.models.msclap_htsat import HTSATWrapper


# -- CNN14 ------------------------------------------------------------------------------------
class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
        # frozen (eval, no gradient to the weights): each conv + BatchNorm is one convolution
        x = F.relu(conv_bn(self.conv1, self.bn1, x))
        x = F.relu(conv_bn(self.conv2, self.bn2, x))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    """PANNs CNN14 as in ``msclap.models.audio.Cnn14``: (B, samples) -> (B, out_emb)."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        c = config
        self.spectrogram_extractor = PowerSpectrogram(c.window_size, c.hop_size)
        self.logmel_extractor = LogMel(c.sample_rate, c.window_size, c.mel_bins, c.fmin, c.fmax)
        self.bn0 = nn.BatchNorm2d(c.mel_bins)
        widths = (1, *c.cnn14_channels)
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(widths[-1], c.out_emb)
        self.fc_audioset = nn.Linear(c.out_emb, c.classes_num)  # unused; in the checkpoint

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, 1, frames, mel_bins)."""
        return self.logmel_extractor(self.spectrogram_extractor(waveforms))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.log_mel(waveforms)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # normalise each mel bin
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1))
            x = F.dropout(x, p=0.2, training=self.training)
        x = x.mean(dim=3)  # over frequency
        x = x.max(dim=2).values + x.mean(dim=2)  # over time
        x = F.dropout(x, p=0.5, training=self.training)
        return F.dropout(F.relu(self.fc1(x)), p=0.5, training=self.training)


# -- projection and towers ----------------------------------------------------------------------
class Projection(nn.Module):
    """Linear -> GELU -> Linear -> Dropout, residual, LayerNorm (``msclap.models.clap``)."""

    def __init__(self, d_in: int, d_out: int, p: float = 0.5):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed1 = self.linear1(x)
        return self.layer_norm(embed1 + self.drop(self.linear2(F.gelu(embed1))))


class AudioEncoder(nn.Module):
    def __init__(self, config: MSClapConfig):
        super().__init__()
        if config.audio_encoder == "cnn14":
            self.base = Cnn14(config)
        else:
            self.base = HTSATWrapper(config)
        self.projection = Projection(config.out_emb, config.d_proj)


class TextEncoder(nn.Module):
    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.kind = config.text_encoder
        if self.kind == "bert":
            from transformers import BertConfig, BertModel

            self.base = BertModel(BertConfig.from_dict(config.text_config))
        else:
            from transformers import GPT2Config, GPT2Model

            self.base = GPT2Model(GPT2Config.from_dict(config.text_config))
        self.projection = Projection(config.transformer_embed_dim, config.d_proj)

    def features(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled hidden state (B, transformer_embed_dim) of tokenised captions."""
        hidden = self.base(**tokens).last_hidden_state
        if self.kind == "bert":
            return hidden[:, 0]
        # The original finds the last real token as "ids != 0": GPT-2's id 0 is "!", its pad.
        last = tokens["input_ids"].ne(0).sum(-1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class MSClapNet(nn.Module):
    """``msclap.models.clap.CLAP`` with the same parameter names (inference path)."""

    def __init__(self, config: MSClapConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        self.caption_encoder = TextEncoder(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
