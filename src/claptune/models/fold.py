"""BatchNorm folded into the convolution before it, for frozen inference.

In eval mode a BatchNorm after a bias-free convolution is an affine map per output channel,
so ``bn(conv(x))`` is one convolution with scaled weights and a bias:

    w' = w * gamma / sqrt(var + eps),   b' = beta + (b - mean) * gamma / sqrt(var + eps)

``conv_bn(conv, bn, x)`` runs that single convolution whenever it is exact to do so: the
BatchNorm is in eval mode (running statistics) and no gradient has to reach the convolution's
or the BatchNorm's parameters (``torch.no_grad``/``inference_mode``, or all of them frozen, as
in the default model's encoder). Otherwise (training, or fine-tuning a whole encoder) it runs
the two modules as written, so training still sees and updates its BatchNorm.

Nothing is rewritten at load: the modules, their parameters and state dicts stay those of the
original networks (strict loading, saving and the exactness checks are untouched). The folded
weights are computed in float64 once and cached on the BatchNorm module, keyed by the version
counters, storage and device of the six tensors they come from, so an optimiser step, a
``load_state_dict`` or ``.to(device)`` recomputes them on the next call. Vectors differ from
the unfolded path by float32 rounding only (tests/test_fast_inference.py; about 1e-7 on the
default model's embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Switch for tests and benchmarks: False runs every conv + BatchNorm pair as written.
ENABLED = True


def _key(tensors: list[torch.Tensor | None]) -> tuple:
    return tuple(
        None if t is None else (id(t), t._version, t.data_ptr(), t.device, t.dtype) for t in tensors
    )


def folded_weights(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the one convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    sources = [conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean, bn.running_var]
    key = (*_key(sources), channels_last)
    cached = getattr(bn, "_claptune_folded", None)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    # plain tensors even inside inference_mode: the cache may serve a later no_grad call
    with torch.inference_mode(False), torch.no_grad():
        scale = (bn.weight.double() if bn.affine else 1.0) / (
            bn.running_var.double() + bn.eps
        ).sqrt()
        shift = bn.bias.double() if bn.affine else 0.0
        bias = conv.bias.double() if conv.bias is not None else 0.0
        weight = (conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype)
        bias = (shift + (bias - bn.running_mean.double()) * scale).to(conv.weight.dtype)
        if channels_last:
            weight = weight.contiguous(memory_format=torch.channels_last)
    bn._claptune_folded = (key, weight, bias)
    return weight, bias


def can_fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> bool:
    """Whether ``bn(conv(x))`` may run as one folded convolution right now (see the module)."""
    if not ENABLED or bn.training or bn.running_var is None or conv.padding_mode != "zeros":
        return False
    if not torch.is_grad_enabled():
        return True
    return not any(
        p is not None and p.requires_grad for p in (conv.weight, conv.bias, bn.weight, bn.bias)
    )


def conv_bn(
    conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, channels_last: bool = False
) -> torch.Tensor:
    """``bn(conv(x))``, as one convolution with the BatchNorm folded in whenever exact."""
    if not can_fold(conv, bn):
        return bn(conv(x))
    weight, bias = folded_weights(conv, bn, channels_last)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


__all__ = ["ENABLED", "can_fold", "conv_bn", "folded_weights"]
