"""TFLite's architecture in PyTorch: TensorFlow's SAME padding and the TF input range."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Mean and std that map [0, 1] pixels to the [-1, 1] range the TF-slim MobileNets trained on.
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


def _same_pad(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Total padding of TensorFlow's SAME rule along one axis."""
    out = -(-size // stride)
    return max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _tf_same_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    ph = _same_pad(x.shape[-2], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
    pw = _same_pad(x.shape[-1], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
    if ph > 0 or pw > 0:
        # TensorFlow puts the odd pixel after (bottom, right); PyTorch has no such mode.
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


class TFSamePadConv2d(nn.Conv2d):
    """``nn.Conv2d`` padding like TensorFlow's SAME, for any input size.

    Its parameters are ``weight`` (and ``bias``), as for ``nn.Conv2d``, so state dicts are
    interchangeable; only the padding differs (0 before, 1 after for stride 2 on even
    sizes, where ``nn.Conv2d(padding=1)`` pads 1 on both sides).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tf_same_conv(self, x)


class TFInputConv2d(TFSamePadConv2d):
    """The stem of a TF model, fed with input normalised by other statistics.

    Maps the caller's normalised input back to the TF range ``[-1, 1]`` before padding (TF
    pads zeros in its own range). The map is held in non-persistent buffers: it is part of
    the architecture, not of the state dict.
    """

    def __init__(self, *args, mean: Sequence[float], std: Sequence[float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # x_norm = (x01 - mean) / std and x_tf = 2 * x01 - 1, so x_tf = 2 std x_norm + 2 mean - 1.
        scale = 2.0 * torch.tensor(std, dtype=torch.float32)
        shift = 2.0 * torch.tensor(mean, dtype=torch.float32) - 1.0
        self.register_buffer("input_scale", scale.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _tf_same_conv(self, x * self.input_scale + self.input_shift)


def _convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _swap(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, last, new)


def _rebuilt(conv: nn.Conv2d, cls: type[nn.Conv2d], **extra) -> nn.Conv2d:
    new = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=0,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        **extra,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def tf_architecture(
    model: nn.Module, mean: Sequence[float] = TF_MEAN, std: Sequence[float] = TF_STD
) -> nn.Module:
    """Turns a MobileNet into the architecture of its TFLite counterpart, in place.

    Strided convolutions with a kernel over 1 become :class:`TFSamePadConv2d` (stride-1
    ones already pad as SAME does: symmetrically). Where ``mean``/``std`` are not the TF
    models' own (0.5), the stem becomes a :class:`TFInputConv2d` that maps input normalised
    with them to ``[-1, 1]``. Parameter and buffer names in the state dict are unchanged.

    Args:
        model: a freshly built MobileNet (torchvision's or timm's).
        mean: per-channel mean the caller normalises input with.
        std: per-channel standard deviation the caller normalises input with.

    Returns:
        The same model.
    """
    convs = _convs(model)
    tf_input = not (np.allclose(mean, TF_MEAN) and np.allclose(std, TF_STD))
    for index, (path, conv) in enumerate(convs):
        strided = max(conv.stride) > 1 and max(conv.kernel_size) > 1
        if index == 0 and tf_input:
            _swap(model, path, _rebuilt(conv, TFInputConv2d, mean=mean, std=std))
        elif strided:
            _swap(model, path, _rebuilt(conv, TFSamePadConv2d))
    return model
