"""Model checkpoints: the best epoch's weights with what produced them (paper §4.2).

Paper §4.2 ("Model Check Point") keeps only the weights of the epoch with the best score.
A checkpoint here holds ``{"model": state_dict, "backbone", "config", "epoch", "metrics"}``
(house style 5), is written atomically so that an interrupted run never leaves a
half-written file behind, and loads with ``torch.load(..., weights_only=True)``, which
unpickles tensors and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mammocad.io import atomic_file

logger = logging.getLogger(__name__)

#: Keys every checkpoint holds.
REQUIRED_KEYS = ("model", "backbone", "config", "epoch", "metrics")


def _plain(value: Any, key: str) -> Any:
    """``value`` as the plain containers ``weights_only`` loading accepts."""
    if isinstance(value, np.generic):
        return _plain(value.item(), key)
    if value is None:
        return value
    for plain in (bool, int, float, str):  # bool before int: it is one
        if isinstance(value, plain):
            # subclasses (enums, NumPy's float64) would pickle as globals
            return plain(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"checkpoint {key}: {type(value).__name__} is not a plain value "
        "(None, bool, int, float, str, list, dict)"
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    backbone: str,
    config: Mapping[str, Any],
    epoch: int,
    metrics: Mapping[str, Any],
) -> None:
    """Writes a checkpoint atomically (paper §4.2, best weights only).

    Args:
        path: the ``.pt`` file to write; its directory is created.
        model: the model, or a ``state_dict`` such as ``FitResult.best_state``.
        backbone: registered backbone name (or ``"shallow_cnn"``).
        config: the run's configuration as plain values (e.g. ``config.to_dict(...)``).
        epoch: the epoch the weights come from (1-based).
        metrics: plain-valued metrics of that epoch; NumPy scalars are converted.

    Raises:
        TypeError: if ``config`` or ``metrics`` hold a value other than None, bool, int,
            float, str, list or dict (it would not load with ``weights_only=True``),
            naming its key.
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    payload = {
        "model": {k: v.detach().cpu() for k, v in state.items()},
        "backbone": str(backbone),
        "config": _plain(config, "config"),
        "epoch": int(epoch),
        "metrics": _plain(metrics, "metrics"),
    }
    with atomic_file(path, "wb") as fh:
        torch.save(payload, fh)
    logger.info("saved checkpoint %s (%s, epoch %d)", path, backbone, epoch)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint`, tensors on the CPU.

    Returns:
        ``{"model": state_dict, "backbone", "config", "epoch", "metrics"}``.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: if the file cannot be read as a checkpoint (truncated, not a torch
            file, or holding more than tensors and plain values), is not a mapping, or
            lacks a key; the message names the path and the missing key.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zips, pickles and foreign files fail in many ways
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a checkpoint (holds a {type(data).__name__}, not a dict)")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ValueError(f"{path}: not a checkpoint, missing key {key!r}")
    model = data["model"]
    if not isinstance(model, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in model.values()
    ):
        raise ValueError(f"{path}: checkpoint key 'model' is not a state dict of tensors")
    return data


#: ``build(backbone, init_source)`` → the untrained architecture a checkpoint's weights fit.
Builder = Callable[[str, "str | None"], nn.Module]


def rebuild_backbone(ckpt: Mapping[str, Any], build: Builder | None = None) -> nn.Module:
    """The fine-tuned backbone of a loaded checkpoint, in eval mode.

    The checkpoint's init source decides the architecture (models converted from the
    bundled TFLite weights pad like TensorFlow), so it is passed to ``build`` with the
    backbone name. ``build`` defaults to :func:`mammocad.models.backbones.build_architecture`;
    ``mammocad predict``, the ``evaluate`` and ``localize`` stages and the MLflow model's
    loader pass :func:`mammocad.inference.build_architecture`, which makes the same state
    dict without importing torchvision or timm.
    """
    if build is None:
        from mammocad.models.backbones.build import build_architecture as build
    model = build(ckpt["backbone"], (ckpt.get("metrics") or {}).get("init"))
    model.load_state_dict(ckpt["model"])
    return model.eval()


def load_trained_backbone(
    path: str | os.PathLike, build: Builder | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Loads a checkpoint and rebuilds its backbone (see :func:`rebuild_backbone`)."""
    ckpt = load_checkpoint(path)
    return rebuild_backbone(ckpt, build), ckpt
