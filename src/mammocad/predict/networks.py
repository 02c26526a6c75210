"""Rebuilding the trained networks and their input normalisation from the checkpoints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from mammocad.checkpoint import load_checkpoint, load_trained_backbone
from mammocad.entries import SHALLOW
from mammocad.inference import build_architecture
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
