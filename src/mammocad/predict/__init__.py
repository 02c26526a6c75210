"""Prediction on new mammograms: the whole framework of paper Fig. 1 on one image.

Paper Fig. 1: a pre-processed full mammogram goes to the shallow CNN (normal vs cancerous,
Fig. 2) and to the fine-tuned MobileNet patch network, whose class activation map
localizes masses in the full image. :class:`Predictor` loads both trained networks once
(their ONNX graphs where these were exported from the checkpoints, else the checkpoints)
and, for each file, repeats the training preprocessing exactly (same enhancement chain with
the full-image tile grid, same down-sizing and orientation for the shallow CNN, same
normalisation as in training), then reports the shallow CNN's probability and
the strongest heatmap regions with bounding boxes in the original image's pixels. The
localization always runs; the shallow probability is reported beside it rather than used
as a gate, so that a reader sees both.

:mod:`~mammocad.predict.load` reads the files (and refuses what cannot be a mammogram),
:mod:`~mammocad.predict.runtime` runs the networks' exported graphs on ONNX Runtime,
:mod:`~mammocad.predict.networks` rebuilds them from their checkpoints on PyTorch where the
graphs are missing or stale, :mod:`~mammocad.predict.predictor` runs them and draws the
overlays, and
:mod:`~mammocad.predict.geometry` sizes the heatmap stripes and region crops.
"""

from mammocad.entries import SHALLOW
from mammocad.predict.geometry import stripe_pixels
from mammocad.predict.load import (
    IMAGE_SUFFIXES,
    NotAMammogram,
    check_image,
    has_dicom_preamble,
    load_image,
)
from mammocad.predict.predictor import DEFAULT_TILE_PIXELS, ENGINES, Prediction, Predictor
from mammocad.predict.runtime import Unavailable

__all__ = [
    "DEFAULT_TILE_PIXELS",
    "ENGINES",
    "IMAGE_SUFFIXES",
    "SHALLOW",
    "Unavailable",
    "NotAMammogram",
    "Prediction",
    "Predictor",
    "check_image",
    "has_dicom_preamble",
    "load_image",
    "stripe_pixels",
]
