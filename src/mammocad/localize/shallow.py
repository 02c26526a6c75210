"""The shallow CNN's class activation map of a whole mammogram: where the image classifier
of paper Fig. 2 sees the finding that makes an image cancerous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from mammocad.localize.cam import _inference_state
from mammocad.models.data import ImageSet, batches
from mammocad.models.shallow import ShallowCNN


@torch.no_grad()
def shallow_cams(model: ShallowCNN, images: ImageSet, batch_size: int = 32) -> list[np.ndarray]:
    """Per-location cancerous log-odds of each image, at the last block's feature grid.

    The head (global pooling, then one linear layer) is applied at every location of the
    last block's feature maps ``A_k``: ``M(x, y) = Σ_k (w_1k − w_0k) A_k(x, y) + b_1 − b_0``,
    the class activation map of Zhou et al. (2016). With the default global max pooling,
    ``M(x, y)`` is the log-odds the network would give an image whose every feature map
    peaked at that location, so the map's maximum marks where the evidence for a finding
    lies (weakly supervised localization from image labels, as in Oquab et al. 2015).

    Args:
        model: a trained shallow CNN (two classes, 1 = cancerous), in eval mode.
        images: the down-sized full mammograms it reads, normalised as in training.
        batch_size: images per forward pass.

    Returns:
        One float32 map per image, in the images' orientation, spanning the whole input:
        the ``(h, w)`` feature grid itself where the blocks' total stride divides the input
        (the default 256 × 160 with four blocks), else (max pooling drops the last rows or
        columns) the grid resized onto the input pixels it covers and extended over the
        rest with its edge values.
    """
    features = model.get_submodule(model.cam_target_layer)
    classifier = model.get_submodule(model.classifier_layer)
    weight = (classifier.weight[1] - classifier.weight[0]).float()
    bias = float(classifier.bias[1] - classifier.bias[0]) if classifier.bias is not None else 0.0
    stride = 2 ** len(model.config.channels)  # one 2×2 max pooling per block
    maps: list[np.ndarray] = []
    with _inference_state(model, freeze=False):
        for x, _ in batches(images, batch_size):
            a = features(x).float()
            cams = (torch.einsum("k,nkhw->nhw", weight, a) + bias).numpy().astype(np.float32)
            (h_in, w_in), (gh, gw) = x.shape[-2:], a.shape[-2:]
            ch, cw = gh * stride, gw * stride  # the input pixels the grid covers
            for cam in cams:
                if (ch, cw) != (h_in, w_in):
                    cam = cv2.resize(cam, (cw, ch), interpolation=cv2.INTER_LINEAR)
                    cam = cv2.copyMakeBorder(cam, 0, h_in - ch, 0, w_in - cw, cv2.BORDER_REPLICATE)
                maps.append(cam)
    return maps


def shallow_heatmap(
    cam: np.ndarray, flipped: bool, shape: Sequence[int], breast: np.ndarray | None = None
) -> np.ndarray:
    """A shallow-CNN map at a full mammogram's own size and orientation.

    The ``patches`` stage flipped some images (chest wall on the left) and resized them to
    a fixed size without keeping the aspect ratio; the map is flipped back and resized
    bilinearly straight to ``shape`` (cell ``i`` of ``h`` lands at pixel
    ``(i + 0.5) · H / h − 0.5``), then mapped through the logistic function to [0, 1] and
    zeroed outside the breast.

    Args:
        cam: the ``(h, w)`` log-odds map of :func:`shallow_cams`.
        flipped: whether the shallow CNN's input was the image flipped left-right.
        shape: rows and columns of the full image.
        breast: boolean breast mask of that shape, or ``None`` to keep every pixel.
    """
    grid = np.ascontiguousarray(cam[:, ::-1] if flipped else cam, dtype=np.float32)
    h, w = int(shape[0]), int(shape[1])
    values = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    values = (1.0 / (1.0 + np.exp(-values))).astype(np.float32)
    if breast is not None:
        if breast.shape != (h, w):
            raise ValueError(f"breast mask shape {breast.shape} differs from {(h, w)}")
        values[~breast] = 0.0
    return values


def is_flipped(value: Any) -> bool:
    """The ``flipped`` column of a patches manifest read from CSV (bool or its text)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def shallow_maps(
    model: ShallowCNN, images: ImageSet, frame: Any, batch_size: int = 32
) -> Mapping[str, tuple[np.ndarray, bool]]:
    """:func:`shallow_cams` of ``frame``'s images keyed by ``image_id``, with their flips.

    Args:
        model: the trained shallow CNN.
        images: ``frame``'s images, normalised as in training.
        frame: the rows ``images`` reads, with ``image_id`` and ``flipped``.
        batch_size: images per forward pass.
    """
    cams = shallow_cams(model, images, batch_size)
    ids, flips = frame["image_id"].astype(str).tolist(), frame["flipped"].tolist()
    return {i: (c, is_flipped(f)) for i, c, f in zip(ids, cams, flips, strict=True)}
