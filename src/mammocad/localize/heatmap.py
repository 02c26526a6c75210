"""Full-resolution heatmaps of whole mammograms: the activation map of the rescaled image
resized to the original and zeroed outside the breast, with the method each backbone gets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mammocad.localize.breast import breast_mask
from mammocad.localize.cam import _striped_cam, activation_map, to_input
from mammocad.localize.maps import (
    DEFAULT_HALO,
    DEFAULT_MAX_PIXELS,
    PATCH_INPUT,
    Heatmap,
    Method,
    check_method,
    full_resolution,
    working_shape,
)
from mammocad.models.backbones import get_module, get_spec
from mammocad.patches import resize

log = logging.getLogger(__name__)


def compute_heatmap(
    model: nn.Module,
    image: np.ndarray,
    scale: float,
    mean: Sequence[float],
    std: Sequence[float],
    target_layer: nn.Module,
    classifier: nn.Module | None,
    method: Method = "cam",
    breast: np.ndarray | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tile_pixels: int | None = None,
    halo: int = DEFAULT_HALO,
) -> Heatmap:
    """The malignancy heatmap of a whole mammogram with explicit layers (paper §3).

    The image is resized by ``scale`` (cubic when growing, area when shrinking, as the
    training patches were), run through the network once, and its class-1 activation map
    is resized bilinearly to the image's own size and zeroed outside the breast.

    Args:
        model: the patch network.
        image: 2-D ``uint8``/``uint16`` image, already enhanced as in training.
        scale: factor from original to network pixels (``224 / patch_px``).
        mean: per-channel normalisation mean of the network's training inputs.
        std: per-channel normalisation standard deviation.
        target_layer: module whose feature maps are weighted.
        classifier: the final linear layer (for ``cam``).
        method: ``cam`` or ``gradcam`` (used as given).
        breast: boolean breast mask of the image's shape; computed when ``None``.
        max_pixels: cap on the rescaled image's pixels (see :func:`working_shape`).
        tile_pixels: for CAM, run the network on horizontal stripes of at most about this
            many rescaled pixels each (plus ``halo`` rows either side) instead of the whole
            image at once, which bounds the memory of the pass (see :func:`_striped_cam`);
            ``None`` runs it whole.
        halo: rescaled rows of context above and below each stripe.

    Returns:
        The :class:`Heatmap`.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    wh, ww = working_shape((h, w), scale, max_pixels)
    work = resize(image, wh, ww)
    if method == "cam" and tile_pixels and wh * ww > tile_pixels:
        amap = _striped_cam(model, work, mean, std, target_layer, classifier, tile_pixels, halo)
    else:
        x = to_input(work, mean, std).contiguous(memory_format=torch.channels_last)
        amap = activation_map(model, x, target_layer, classifier, method)
    del work
    if breast is None:
        breast = breast_mask(image)
    return full_resolution(amap, (h, w), breast, (wh, ww))


def heatmap_method(backbone: str, method: Method = "cam") -> str:
    """The method actually used for a backbone: CAM where its head allows, else Grad-CAM."""
    check_method(method)
    exact = get_spec(backbone).head == "gap_linear"
    return "cam" if method == "cam" and exact else "gradcam"


def backbone_heatmap(
    model: nn.Module,
    backbone: str,
    image: np.ndarray,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    method: Method = "cam",
    *,
    breast: np.ndarray | None = None,
    input_size: int = PATCH_INPUT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tile_pixels: int | None = None,
) -> Heatmap:
    """:func:`malignancy_heatmap` returning the full :class:`Heatmap` record.

    ``tile_pixels`` bounds the memory of the network pass (see :func:`compute_heatmap`).
    """
    if not patch_px > 0 or not math.isfinite(patch_px):
        raise ValueError(f"patch_px must be a positive number, got {patch_px}")
    spec = get_spec(backbone)
    used = heatmap_method(backbone, method)
    if used != method:
        log.debug("%s has a fully connected head: using Grad-CAM", backbone)
    return compute_heatmap(
        model,
        image,
        input_size / patch_px,
        mean,
        std,
        get_module(model, spec.cam_target_layer),
        get_module(model, spec.classifier),
        used,  # type: ignore[arg-type]
        breast=breast,
        max_pixels=max_pixels,
        tile_pixels=tile_pixels,
    )


def malignancy_heatmap(
    model: nn.Module,
    backbone: str,
    image: np.ndarray,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    method: Method = "cam",
    *,
    breast: np.ndarray | None = None,
    input_size: int = PATCH_INPUT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Heatmap of malignancy over a full mammogram from the patch network (paper §3).

    Args:
        model: a fine-tuned backbone of paper Table 1 (two classes, 1 = malignant).
        backbone: its registry name, which gives the CAM target layer and classifier.
        image: 2-D ``uint16`` (or ``uint8``) full mammogram, already enhanced as in
            training (paper §3.2).
        patch_px: typical side, in this image's pixels, of the ROI crops the network was
            trained on; the image is rescaled by ``input_size / patch_px``.
        mean: per-channel normalisation mean of the network's training inputs.
        std: per-channel normalisation standard deviation.
        method: ``cam`` uses CAM where the head is global average pooling + one linear
            layer (a ``gap_linear`` head on the backbone's spec) and Grad-CAM otherwise; ``gradcam``
            always uses Grad-CAM.
        breast: boolean breast mask of the image's shape; computed when ``None``.
        input_size: side of the training patches.
        max_pixels: cap on the rescaled image's pixels.

    Returns:
        float32 map in [0, 1] of the image's shape, zero outside the breast: the
        per-location malignant probability (CAM) or relative saliency (Grad-CAM).

    Raises:
        KeyError: for an unknown backbone.
        ValueError: for an unknown method, a non-positive ``patch_px`` or a bad image.
    """
    return backbone_heatmap(
        model,
        backbone,
        image,
        patch_px,
        mean,
        std,
        method,
        breast=breast,
        input_size=input_size,
        max_pixels=max_pixels,
    ).values
