"""The classes a run trains on: the labels of a dataset, the number of classes, and the
inverse-frequency class weights of the cross-entropy.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


def class_weights(labels: torch.Tensor | np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``n / (num_classes · n_c)``.

    A balanced set gets weights of 1; a class absent from ``labels`` gets the weight of a
    class seen once (it never enters the loss anyway).

    Returns:
        ``(num_classes,)`` float32 tensor.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    if (counts == 0).any():
        logger.warning("class(es) %s absent from the training labels", _absent(counts))
    weights = labels.numel() / (num_classes * counts.clamp(min=1))
    return weights.to(torch.float32)


def _absent(counts: torch.Tensor) -> list[int]:
    return [i for i, c in enumerate(counts.tolist()) if c == 0]


def _num_classes(*label_sets: torch.Tensor) -> int:
    top = max(int(labels.max()) for labels in label_sets)
    return max(2, top + 1)


def _labels_of(dataset: Dataset) -> torch.Tensor:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]  # type: ignore[arg-type]
    return torch.as_tensor(labels, dtype=torch.int64)
