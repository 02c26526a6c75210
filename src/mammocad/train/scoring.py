"""A model scored on a dataset: the validation loss, accuracy and probabilities the loop
selects its best epoch on, and :func:`predict_proba` for everything after training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mammocad.models.data import batches
from mammocad.train.device import _autocast, _to


@torch.inference_mode()
def _evaluate(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    criterion: nn.CrossEntropyLoss,
    device: torch.device,
    precision: str = "off",
    channels_last: bool = False,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Loss (weighted as in training), accuracy, labels and class-1 probabilities."""
    model.eval()
    loss_sum = weight_sum = 0.0
    correct = 0
    labels, probs = [], []
    weight = criterion.weight
    for x, y in batches(dataset, batch_size):
        x, y = _to(x, device, channels_last), y.to(device)
        with _autocast(device, precision):
            logits = model(x).float()
        per_item = nn.functional.cross_entropy(logits, y, weight=weight, reduction="none")
        w = weight[y] if weight is not None else torch.ones_like(per_item)
        loss_sum += float(per_item.sum(dtype=torch.float64))
        weight_sum += float(w.sum(dtype=torch.float64))
        correct += int((logits.argmax(1) == y).sum())
        labels.append(y.cpu().numpy())
        probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    y_all = np.concatenate(labels)
    return loss_sum / weight_sum, correct / len(y_all), y_all, np.concatenate(probs)


@torch.inference_mode()
def predict_proba(model: nn.Module, dataset: Dataset, batch_size: int = 64) -> np.ndarray:
    """Probability of class 1 (malignant, or cancerous) for every image, in order.

    The model is evaluated in eval mode (batch norm on stored statistics, no dropout) and
    returned to the mode it was in.

    Returns:
        ``(N,)`` float64 array.
    """
    was_training = model.training
    model.eval()
    try:
        probs = [
            torch.softmax(model(x).float(), dim=1)[:, 1].to(torch.float64).numpy()
            for x, _ in batches(dataset, batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(probs) if probs else np.zeros(0, dtype=np.float64)
