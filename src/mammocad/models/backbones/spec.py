"""How a backbone of paper Table 1 is described (:class:`BackboneSpec`), and the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from mammocad.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights for a backbone are neither cached nor downloadable."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone of paper Table 1 and where its parts are.

    Attributes:
        name: registry name, e.g. ``"mobilenet_v1"``.
        builder: ``builder(pretrained)`` returns the ImageNet architecture with its original
            1000-class head; with ``pretrained=True`` it loads the weights from the local
            cache only (see :func:`fetch_weights`).
        classifier: dotted path of the final ``nn.Linear`` replaced by the two-class head.
        head: ``"gap_linear"`` when the classifier is one linear layer on globally
            average-pooled features, so that the class activation map (CAM) of paper §3 is
            exact; ``"mlp"`` for fully connected stacks (AlexNet, VGG), which take Grad-CAM.
        cam_target_layer: dotted path of the last convolutional feature block, whose
            activations the class activation maps of paper §3 weight.
        default_frozen: module-path prefixes frozen by default (paper §3: "the network's
            initial layers are kept frozen").
        source: ``"torchvision"`` or ``"timm"``.
        weights: the library's weight identifier: a torchvision enum name such as
            ``"MobileNet_V2_Weights.IMAGENET1K_V1"`` or a timm ``model.tag`` name.
        input_size: side of the square input the ImageNet weights were trained on.
        mean: per-channel normalisation mean the weights expect.
        std: per-channel normalisation standard deviation the weights expect.
        bundled: file name, under ``mammocad/models/weights/``, of the bundled int8 TFLite
            ImageNet model used where the library's float weights cannot be had; None for
            backbones without one. Models built for it take the same ``mean``/``std``.
    """

    name: str
    builder: Callable[[bool], nn.Module]
    classifier: str
    head: Literal["gap_linear", "mlp"]
    cam_target_layer: str
    default_frozen: tuple[str, ...]
    source: Literal["torchvision", "timm"]
    weights: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bundled: str | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def get_spec(name: str) -> BackboneSpec:
    """Returns the spec of a registered backbone (paper Table 1).

    Raises:
        KeyError: for an unknown name, listing the valid ones.
    """
    return BACKBONES.get(name)
