"""The trained networks on PyTorch (:class:`TorchNetworks`), rebuilt from their checkpoints
with their input normalisation."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammocad.checkpoint import load_checkpoint, load_trained_backbone
from mammocad.entries import SHALLOW
from mammocad.inference import build_architecture
from mammocad.localize.maps import Heatmap
from mammocad.models.shallow import ShallowCNN, shallow_from_checkpoint

log = logging.getLogger("mammocad.predict")  # the package's logger, named in the log lines


def _backbone_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuilds a fine-tuned backbone from its checkpoint (no ImageNet weights needed).

    :func:`mammocad.checkpoint.load_trained_backbone` with, for the MobileNets, the
    architectures of :mod:`mammocad.inference` (the same state dict and outputs, without
    importing torchvision or timm).
    """
    return load_trained_backbone(path, build_architecture)


def _shallow_model(path: Path) -> tuple[ShallowCNN, dict[str, Any]]:
    """Rebuilds the shallow CNN of a checkpoint; its widths are read from the weights."""
    ckpt = load_checkpoint(path)
    if ckpt["backbone"] != SHALLOW:
        raise ValueError(f"{path}: holds {ckpt['backbone']!r}, not the {SHALLOW!r} model")
    try:
        return shallow_from_checkpoint(ckpt), ckpt
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _input_stats(
    ckpt: dict[str, Any], default: tuple | None, path: Path
) -> tuple[list[float], list[float]]:
    stats = (ckpt.get("config") or {}).get("input") or {}
    mean, std = stats.get("mean"), stats.get("std")
    if mean is None or std is None:
        if default is None:
            raise ValueError(f"{path}: the checkpoint's config holds no input mean/std")
        log.warning("%s: no input mean/std in the checkpoint; using %s", path, default)
        return list(default[0]), list(default[1])
    return [float(v) for v in mean], [float(v) for v in std]


class TorchNetworks:
    """The patch network and shallow CNN of two checkpoints, on PyTorch.

    The interface of :class:`mammocad.predict.runtime.OnnxNetworks`, for every backbone and
    method: Grad-CAM for the fully connected heads, CAM otherwise.

    Args:
        checkpoint_backbone: the fine-tuned patch network's checkpoint.
        checkpoint_shallow: the shallow CNN's checkpoint, or ``None``.
        method: ``cam`` (Grad-CAM where the head needs it) or ``gradcam``.
    """

    engine = "torch"

    def __init__(
        self, checkpoint_backbone: Path, checkpoint_shallow: Path | None, method: str = "cam"
    ) -> None:
        from mammocad.inference import cam_halo, fuse_for_inference
        from mammocad.localize import DEFAULT_HALO, heatmap_method
        from mammocad.models.backbones import get_module, get_spec

        model, ckpt = _backbone_model(checkpoint_backbone)
        self.backbone = str(ckpt["backbone"])
        spec = get_spec(self.backbone)
        self.method = heatmap_method(self.backbone, method)  # type: ignore[arg-type]
        # Batch norms and ReLU6 folded into the convolutions (MobileNets; outputs change by
        # float rounding only), and channels-last, which runs depthwise convolutions about
        # 1.6× faster on CPUs.
        self.model = fuse_for_inference(model).to(memory_format=torch.channels_last).eval()
        # context rows of a heatmap stripe: half the network's receptive field
        self.halo = cam_halo(self.model) or DEFAULT_HALO
        self.mean, self.std = _input_stats(ckpt, (spec.mean, spec.std), checkpoint_backbone)
        self.target_layer = get_module(self.model, spec.cam_target_layer)
        self.classifier = get_module(self.model, spec.classifier)
        self.shallow: ShallowCNN | None = None
        self.shallow_info: dict[str, Any] = {}
        if checkpoint_shallow is not None:
            self.shallow, sckpt = _shallow_model(Path(checkpoint_shallow))
            self.shallow_mean, self.shallow_std = _input_stats(
                sckpt, None, Path(checkpoint_shallow)
            )
            self.shallow_info = {
                "positive": (sckpt["config"].get("shallow") or {}).get("positive"),
                "checkpoint": str(checkpoint_shallow),
            }

    @property
    def has_shallow(self) -> bool:
        return self.shallow is not None

    @torch.no_grad()
    def shallow_probability(self, small: np.ndarray) -> float:
        """The shallow CNN's class-1 probability for a down-sized enhanced image."""
        from mammocad.localize import to_input

        if self.shallow is None:
            raise RuntimeError("no shallow CNN checkpoint was given")
        x = to_input(np.ascontiguousarray(small), self.shallow_mean, self.shallow_std)
        return float(torch.softmax(self.shallow(x), dim=1)[0, 1])

    @torch.no_grad()
    def patch_probabilities(self, patches: Sequence[np.ndarray]) -> list[float]:
        """The patch network's class-1 probability for each patch (the training size)."""
        from mammocad.localize import to_input

        if not patches:
            return []
        x = torch.cat([to_input(p, self.mean, self.std) for p in patches])
        x = x.contiguous(memory_format=torch.channels_last)
        return [float(p) for p in torch.softmax(self.model(x), dim=1)[:, 1]]

    def heatmap(
        self,
        image: np.ndarray,
        scale: float,
        breast: np.ndarray,
        max_pixels: int,
        tile_pixels: int | None,
    ) -> Heatmap:
        """The heatmap of an enhanced image rescaled by ``scale``
        (:func:`mammocad.localize.compute_heatmap`; stripes for CAM only)."""
        from mammocad.localize import compute_heatmap

        return compute_heatmap(
            self.model,
            image,
            scale,
            self.mean,
            self.std,
            self.target_layer,
            self.classifier,
            self.method,  # type: ignore[arg-type]
            breast=breast,
            max_pixels=max_pixels,
            tile_pixels=tile_pixels,
            halo=self.halo,
        )
