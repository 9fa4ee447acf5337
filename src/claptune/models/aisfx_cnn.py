"""aisfx's audio CNN, vendored: the 9-layer CNN of Ma and Lerch's aiSFX (ISMIR 2022), without
its package.

The network is ``aisfx.models.cnn2d.EmbeddingNet('max', 3, 1, 64)`` (itself the DCASE 2018
cross-task baseline's ``Cnn_9layers``) and the nine per-library classifiers of aisfx's
``CrossNet.fc``, written here with the same module and parameter names so that the published
state dict loads strictly. The weights (CC BY 4.0, (c) 2022 A. B. Ma and A. Lerch, see
``claptune/weights/aisfx/NOTICE``) were converted once from aisfx 0.1.2's pickled
``checkpoint.pth`` to safetensors by ``scripts/convert_aisfx.py``; loading them needs no
pickle and no aisfx.

Shapes: ``EmbeddingNet.trunk`` maps a scaled log-mel (B, 1, frames, 96) to (B, 512, time);
aisfx's own embedding is its max over time.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from claptune.errors import ClaptuneError
from claptune.models.fold import can_fold, conv_bn

# the aisfx release the weights come from: part of the default model's identity
AISFX_VERSION = "0.1.2"
LIBRARY_CLASSES = (78, 79, 69, 81, 10, 27, 3, 23, 8)  # aisfx's nine classifier heads, in order
WEIGHTS_FILE = Path(__file__).resolve().parents[1] / "weights" / "aisfx" / "aisfx_cnn.safetensors"


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers, then pooling (aisfx's ``ConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(
        self, x: torch.Tensor, pool_size: tuple[int, int] = (2, 2), channels_last: bool = False
    ) -> torch.Tensor:
        # frozen (eval, no gradient to the weights): each conv + BatchNorm is one convolution
        x = F.relu_(conv_bn(self.conv1, self.bn1, x, channels_last))
        x = F.relu_(conv_bn(self.conv2, self.bn2, x, channels_last))
        return F.max_pool2d(x, kernel_size=pool_size) if pool_size != (1, 1) else x


class EmbeddingNet(nn.Module):
    """aisfx's ``EmbeddingNet('max', 3, 1, 64)``: four conv blocks of 64..512 channels."""

    def __init__(self, width: int = 64):
        super().__init__()
        # NHWC activations for the folded (frozen) path: faster with oneDNN on CPU, see
        # docs/embedding.md; the modules and weights are unchanged either way
        self.channels_last = True
        self.conv_block1 = ConvBlock(1, width)
        self.conv_block2 = ConvBlock(width, width * 2)
        self.conv_block3 = ConvBlock(width * 2, width * 4)
        self.conv_block4 = ConvBlock(width * 4, width * 8)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, frames, mels) -> (B, 512, time): the blocks, then the mean over mel bins."""
        cl = self.channels_last and can_fold(self.conv_block1.conv1, self.conv_block1.bn1)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.conv_block1(x, (2, 2), cl)
        x = self.conv_block2(x, (2, 2), cl)
        x = self.conv_block3(x, (2, 2), cl)
        x = self.conv_block4(x, (1, 1), cl)
        return x.mean(dim=3).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, frames, mels) -> (B, 512): aisfx's embedding (max over time)."""
        return self.trunk(x.unsqueeze(1)).amax(dim=2)


def make_classifiers(in_dim: int = 512) -> nn.ModuleList:
    """aisfx's ``CrossNet.fc``: one 512 -> 256 -> 128 -> n_classes MLP per sound library."""
    return nn.ModuleList(
        nn.Sequential(
            nn.Linear(in_dim, in_dim // 2),
            nn.ReLU(),
            nn.Linear(in_dim // 2, in_dim // 4),
            nn.ReLU(),
            nn.Linear(in_dim // 4, n),
        )
        for n in LIBRARY_CLASSES
    )


def load_aisfx_weights(
    net: EmbeddingNet, classifiers: nn.ModuleList, path: str | Path = WEIGHTS_FILE
) -> None:
    """Load the converted aisfx weights strictly (``embedding_net.*`` and ``fc.*`` keys)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ClaptuneError(
            f"the default model's audio weights are missing: {path} (reinstall "
            "claptune, or run scripts/convert_aisfx.py in a source checkout)"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ClaptuneError(f"{path}: not a readable safetensors file ({err})") from None
    nets = {
        k.removeprefix("embedding_net."): v
        for k, v in state.items()
        if k.startswith("embedding_net.")
    }
    fcs = {k.removeprefix("fc."): v for k, v in state.items() if k.startswith("fc.")}
    if len(nets) + len(fcs) != len(state):
        raise ClaptuneError(
            f"{path}: unexpected tensors "
            f"{sorted(set(state) - {'embedding_net.' + k for k in nets} - {'fc.' + k for k in fcs})[:5]}"
        )
    try:
        net.load_state_dict(nets, strict=True)
        classifiers.load_state_dict(fcs, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise ClaptuneError(f"{path}: does not match aisfx's CNN ({first})") from None


__all__ = [
    "AISFX_VERSION",
    "LIBRARY_CLASSES",
    "WEIGHTS_FILE",
    "ConvBlock",
    "EmbeddingNet",
    "load_aisfx_weights",
    "make_classifiers",
]
