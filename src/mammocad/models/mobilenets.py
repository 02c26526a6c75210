"""The two MobileNets of paper Table 1 in plain PyTorch, for fast start-up and inference.

Importing torchvision costs about 2.5 s on a 2-core machine (its package imports the
detection operators, which import ``torch._dynamo``), and timm imports torchvision. Rebuilding
a fine-tuned MobileNet from its checkpoint needs neither: :class:`MobileNetV1` is timm's
``mobilenetv1_100`` and :class:`MobileNetV2` torchvision's ``mobilenet_v2``, with the same
module paths and the same parameter and buffer names, so that a checkpoint of either loads
into them and they compute the same function (``tests/test_backbones.py`` compares both
against the libraries' models, in the library and the bundled-weight layouts).
:func:`mammocad.models.backbones.build_architecture` uses them with ``standalone=True``.

:func:`fuse_for_inference` then prepares such a model for evaluation only: each batch
normalisation is folded into the convolution before it (about a quarter of a CPU pass goes
to normalising activations that the convolution can produce already scaled), and the
TensorFlow-padded strided convolutions of the bundled-weight layout
(:class:`mammocad.models.bundled.TFSamePadConv2d`) compute their asymmetric padding with a
zero row and column in the kernel instead of a padded copy of their input. Both change
results only by float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: MobileNet-v1 stages as timm's ``mobilenetv1_100`` builds them: (output channels,
#: stride of the first block, blocks).
V1_STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 2, 6), (1024, 2, 2))
#: MobileNet-v2 inverted-residual settings as torchvision's: expansion t, channels c,
#: repeats n, stride s.
V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch normalisation followed by ReLU6, as timm's ``BatchNormAct2d`` (same state)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class DepthwiseSeparableConv(nn.Module):
    """timm's depthwise-separable block without skip: 3×3 depthwise, then 1×1 pointwise."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False
        )
        self.bn1 = BatchNormAct2d(in_channels)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = BatchNormAct2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_pw(self.bn1(self.conv_dw(x))))


class MobileNetV1(nn.Module):
    """timm's ``mobilenetv1_100``: stem, 13 depthwise-separable blocks, average pool, linear.

    The 1000-class head is replaced by the caller (as for the library's model).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = BatchNormAct2d(32)
        stages, channels = [], 32
        for out_channels, stride, repeats in V1_STAGES:
            blocks = []
            for i in range(repeats):
                blocks.append(
                    DepthwiseSeparableConv(channels, out_channels, stride if i == 0 else 1)
                )
                channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn1(self.conv_stem(x)))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Module paths of each convolution and the batch normalisation it feeds."""
        pairs = [("conv_stem", "bn1")]
        for s, stage in enumerate(self.blocks):
            for b in range(len(stage)):
                path = f"blocks.{s}.{b}"
                pairs += [(f"{path}.conv_dw", f"{path}.bn1"), (f"{path}.conv_pw", f"{path}.bn2")]
        return pairs


class ConvNormActivation(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6: convolution, batch norm, ReLU6."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 3,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel,
                stride,
                (kernel - 1) // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """torchvision's MobileNet-v2 block: 1×1 expansion, 3×3 depthwise, 1×1 projection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvNormActivation(in_channels, hidden, kernel=1))
        layers += [
            ConvNormActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision's ``mobilenet_v2`` (width 1.0): features, average pool, dropout, linear.

    The 1000-class head is replaced by the caller (as for the library's model).
    """

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        channels = 32
        features: list[nn.Module] = [ConvNormActivation(3, channels, stride=2)]
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(ConvNormActivation(channels, 1280, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Module paths of each convolution and the batch normalisation it feeds."""
        pairs = []
        for name, module in self.named_modules():
            if isinstance(module, ConvNormActivation):
                pairs.append((f"{name}.0", f"{name}.1"))
            elif isinstance(module, InvertedResidual):
                last = len(module.conv) - 1
                pairs.append((f"{name}.conv.{last - 1}", f"{name}.conv.{last}"))
        return pairs


# --------------------------------------------------------------------------- inference


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, last = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, last, module)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Makes ``conv`` output what ``bn`` (in evaluation mode) made of its output."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias, requires_grad=False)


class SamePadConv2d(nn.Module):
    """A TensorFlow-SAME 3×3 stride-2 convolution without a padded copy of its input.

    SAME pads 0 before and 1 after an even side, 1 and 1 an odd one. Padding 1 on both
    sides with a zero row (column) prepended to the kernel for an even side gives the
    same sums with the input read in place. Takes the parameters of a
    :class:`~mammocad.models.bundled.TFSamePadConv2d` (and the input map of a
    :class:`~mammocad.models.bundled.TFInputConv2d` stem).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.weight, self.bias, self.groups = conv.weight, conv.bias, conv.groups
        self.mapped = hasattr(conv, "input_scale")
        if self.mapped:
            self.register_buffer("input_scale", conv.input_scale, persistent=False)
            self.register_buffer("input_shift", conv.input_shift, persistent=False)

    @staticmethod
    def applies(conv: nn.Conv2d) -> bool:
        """Whether ``conv`` is a 3×3, stride-2, undilated convolution."""
        return (
            tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.stride) == (2, 2)
            and tuple(conv.dilation) == (1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mapped:
            x = x * self.input_scale + self.input_shift
        top, left = int(x.shape[-2] % 2 == 0), int(x.shape[-1] % 2 == 0)
        weight = F.pad(self.weight, [left, 0, top, 0]) if top or left else self.weight
        return F.conv2d(x, weight, self.bias, 2, 1, 1, self.groups)


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """Folds batch norms into convolutions and unpads TF-SAME convolutions, in place.

    For evaluation only: the model afterwards has no batch-norm layers and its parameters
    do not train. Models other than :class:`MobileNetV1` and :class:`MobileNetV2` are
    returned unchanged (in evaluation mode). Outputs change by float rounding only.

    Args:
        model: a model built by this module, its weights loaded.

    Returns:
        The same model, in evaluation mode.
    """
    from mammocad.models.bundled import TFSamePadConv2d

    model.eval()
    if not isinstance(model, MobileNetV1 | MobileNetV2):
        return model
    for conv_path, bn_path in model.conv_bn_pairs():
        conv, bn = model.get_submodule(conv_path), model.get_submodule(bn_path)
        _fold(conv, bn)
        _set(model, bn_path, bn.act if isinstance(bn, BatchNormAct2d) else nn.Identity())
    for path, module in list(model.named_modules()):
        if isinstance(module, TFSamePadConv2d) and SamePadConv2d.applies(module):
            _set(model, path, SamePadConv2d(module))
    for param in model.parameters():
        param.requires_grad_(False)
    return model
