"""Mass localization in full mammograms by class activation maps (paper §3, Fig. 1).

Paper §3: "The fine-tuned neural patch network is then used to locate mammographic defects
in mammograms of full size by generating heat-map at the end of output layer." The patch
network was trained on ROI crops resized to 224 × 224, so a full mammogram is first rescaled
by ``224 / patch_px`` (``patch_px``: the typical side, in full-image pixels, of the training
crops) so that lesions appear at the scale the network learned them at. The rescaled image
then goes through the network once, fully convolutionally (no sliding window), and the
malignant class's activation map is read at the backbone's CAM target layer:

* **CAM** (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization") for
  heads made of global average pooling and one linear layer (ResNet-50, GoogLeNet,
  MobileNet-v1, MobileNet-v2). With feature maps ``A_k`` and classifier weights ``w_ck``,
  biases ``b_c``, ``CAM_c(x, y) = Σ_k w_ck A_k(x, y) + b_c``; the network's logit of class
  ``c`` is the spatial mean of ``CAM_c``, because average pooling and the linear layer
  commute. The map reported is the softmax of the CAMs over classes at each location, for
  two classes ``σ(CAM_1 − CAM_0)``: the probability the patch network would give a patch
  whose feature map were this location's features repeated. Averaging the logit difference
  ``CAM_1 − CAM_0`` over any window gives exactly the patch network's logit difference for
  that window's features, so the map is the one-pass equivalent of a sliding classifier.
  Every call checks that identity against the network's own output on the whole image.
* **Grad-CAM** (Selvaraju et al. 2017) for the fully connected heads of AlexNet and VGG:
  the head is applied after adaptive pooling, as the model does, and the map is
  ``ReLU(Σ_k α_k A_k)`` with ``α_k`` the spatial mean of ``∂s/∂A_k``. The score ``s`` is
  the log-odds ``y_1 − y_0``, the only part of the two logits that softmax depends on (the
  class-1 logit alone also rises with evidence shared by both classes). The map is
  min-max scaled to [0, 1] over the breast: a relative saliency, not a probability.
  Gradients are taken with respect to the target layer's output only: the layers before
  it run without an autograd graph, so memory stays that of an inference pass even on a
  full mammogram.

Both are implemented here with forward hooks rather than through the ``grad-cam`` package,
which depends on ``opencv-python`` and would conflict with the project's
``opencv-python-headless`` (both install the ``cv2`` module).

The class map (one value per feature cell) is resized with bilinear interpolation straight
to the original image's size: cell ``i`` of an ``h``-cell axis lands at original pixel
``(i + 0.5) · H / h − 0.5``, which composes the internal rescaling and the network's stride
exactly under the assumption that the feature grid spans the rescaled image uniformly
(true up to half a feature cell, i.e. 16 rescaled pixels or ``patch_px / 14`` original
pixels, for the stride-32 backbones). Outside the breast the heatmap is zero.

The scores follow the weakly supervised localization literature: the pointing game (Zhang
et al. 2016; a hit when the map's maximum lies in the lesion), and IoU and Dice of the
thresholded map against the lesion mask, each next to its chance level.

Modules: :mod:`~mammocad.localize.maps` (the rescaled grid, stripes, and the heatmap from
class activation maps, without a network library), :mod:`~mammocad.localize.cam`
(activation maps in PyTorch, CAM and Grad-CAM, whole or in stripes, and the rescaled
network input), :mod:`~mammocad.localize.breast` (the breast
region and its box), :mod:`~mammocad.localize.heatmap` (full-resolution heatmaps per
backbone), :mod:`~mammocad.localize.scoring` (pointing game, IoU, Dice, chance levels and
their aggregates), :mod:`~mammocad.localize.regions` (top regions and FROC candidates),
:mod:`~mammocad.localize.render` (overlays) and :mod:`~mammocad.localize.dataset` (the
driver, :func:`localize_dataset`).

Each name below loads its module on first use (:func:`__getattr__`), so that what needs no
network library (the breast mask, regions, overlays, :mod:`~mammocad.localize.maps`) is
had without importing PyTorch: ``mammocad predict`` on ONNX Runtime never loads it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule defining it.
_EXPORTS = {
    "breast_box": "breast",
    "breast_mask": "breast",
    "DEFAULT_HALO": "maps",
    "DEFAULT_MAX_PIXELS": "maps",
    "METHODS": "maps",
    "MIN_WORKING_SIDE": "maps",
    "PATCH_INPUT": "maps",
    "STRIDE_ALIGN": "maps",
    "ActivationMap": "maps",
    "Heatmap": "maps",
    "Method": "maps",
    "working_shape": "maps",
    "activation_map": "cam",
    "to_input": "cam",
    "LocalizeConfig": "dataset",
    "LocalizeResult": "dataset",
    "localize_dataset": "dataset",
    "report_overlay_ids": "dataset",
    "backbone_heatmap": "heatmap",
    "compute_heatmap": "heatmap",
    "heatmap_method": "heatmap",
    "malignancy_heatmap": "heatmap",
    "candidate_hits": "regions",
    "peak_candidates": "regions",
    "top_regions": "regions",
    "render_overlay": "render",
    "chance_levels": "scoring",
    "localization_metrics": "scoring",
    "overlap": "scoring",
    "pointing_game": "scoring",
    "score_heatmap": "scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
