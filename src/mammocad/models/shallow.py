"""The shallow CNN of paper Fig. 2: full mammogram → normal vs cancerous.

Paper §3 (Fig. 1) first passes the pre-processed full mammogram through "a binary shallow
CNN classifier" (Fig. 2); only mammograms it calls cancerous go on to the MobileNet-based
mass classifier. The figure shows a short stack of convolution and pooling layers followed
by a classifier; the exact widths are not given, so they are configurable here
(:class:`ShallowConfig`), with batch normalisation as in paper §4.2.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class ShallowConfig:
    """Architecture of the shallow CNN (paper Fig. 2).

    Attributes:
        channels: output channels of each conv block; one block per entry, each halving
            the spatial size.
        dropout: dropout probability before the final linear layer.
        pooling: global pooling of the last feature map: ``max`` lets one small lesion
            decide the image; ``avg`` (the first version of this model) dilutes it over
            the whole breast, and a lesion-sized signal barely moved the output.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.3
    pooling: Literal["avg", "max"] = "avg"

    def __post_init__(self) -> None:
        """Rejects empty or non-positive widths and a dropout outside [0, 1)."""
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ValueError(
                f"channels must be a non-empty tuple of positive ints: {self.channels}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1): {self.dropout}")
        if self.pooling not in ("avg", "max"):
            raise ValueError(f"pooling must be avg or max: {self.pooling!r}")


def _block(c_in: int, c_out: int) -> nn.Sequential:
    # No conv bias: the batch norm that follows has its own shift. The ReLU comes after
    # the max pooling: a maximum commutes with any non-decreasing function, so
    # max(relu(x)) == relu(max(x)), and the gradient reaches the same pixel either way (a
    # window whose maximum is not positive passes none). The ReLU and its backward pass
    # then touch a quarter of the pixels: training steps about 11 % shorter on two CPU
    # cores, the same weights bit for bit.
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            bn=nn.BatchNorm2d(c_out),
            pool=nn.MaxPool2d(kernel_size=2),
            relu=nn.ReLU(inplace=True),
        )
    )


class ShallowCNN(nn.Module):
    """Shallow binary classifier of full mammograms (paper Fig. 2).

    Conv3×3-BN-ReLU-maxpool blocks (computed as conv-BN-maxpool-ReLU, which is the same
    function), global max (or average) pooling, dropout and a linear layer.
    Global pooling makes any input size at least ``2**len(channels)`` pixels per side work
    (e.g. 256×160), so full mammograms keep their aspect ratio.

    Args:
        config: block widths and dropout.
        num_classes: outputs (2: normal vs cancerous).
        in_channels: input channels (1: grey-level mammograms).
    """

    #: Dotted path of the last convolutional feature block, for class activation maps.
    cam_target_layer = "features"
    #: Dotted path of the final linear layer.
    classifier_layer = "classifier"

    def __init__(
        self, config: ShallowConfig | None = None, num_classes: int = 2, in_channels: int = 1
    ) -> None:
        super().__init__()
        self.config = config or ShallowConfig()
        widths = (in_channels, *(int(c) for c in self.config.channels))
        self.features = nn.Sequential(
            OrderedDict(
                (f"block{i}", _block(c_in, c_out))
                for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            )
        )
        self.pool = (
            nn.AdaptiveMaxPool2d(1) if self.config.pooling == "max" else nn.AdaptiveAvgPool2d(1)
        )
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``(N, in_channels, H, W)`` images to ``(N, num_classes)`` logits."""
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


def shallow_from_checkpoint(ckpt: dict[str, Any]) -> ShallowCNN:
    """Rebuilds the shallow CNN of a loaded ``train_shallow`` checkpoint, in eval mode.

    The widths come from the weights themselves, dropout and pooling from the recorded
    ``shallow`` params (checkpoints written before pooling was a param used ``avg``).

    Raises:
        ValueError: if the checkpoint holds no shallow CNN convolution weights.
    """
    state = ckpt["model"]
    convs = sorted(
        (k for k in state if re.fullmatch(r"features\.block\d+\.conv\.weight", k)),
        key=lambda k: int(k.split(".")[1][5:]),
    )
    if not convs:
        raise ValueError("no shallow CNN convolution weights in the checkpoint")
    cfg = (ckpt.get("config") or {}).get("shallow") or {}
    model = ShallowCNN(
        ShallowConfig(
            channels=tuple(int(state[k].shape[0]) for k in convs),
            dropout=float(cfg.get("dropout") or 0.0),
            pooling=cfg.get("pooling", "avg"),
        ),
        num_classes=int(state["classifier.weight"].shape[0]),
        in_channels=int(state[convs[0]].shape[1]),
    )
    model.load_state_dict(state)
    model.eval()
    return model
