"""Plot data files for ``dvc plots`` (CSV) from training histories and evaluation results.

The top-level ``plots:`` of ``dvc.yaml`` name these files: training curves, ROC and PR
curves (paper §4.1) and the confusion matrix at the chosen threshold (paper §4.1, eqs. 1-3
count its cells).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mammocad.io import write_csv

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc", "val_auc", "lr")


def write_history(path: str | os.PathLike, history: Iterable[Mapping[str, Any]]) -> None:
    """Per-epoch loss, accuracy, AUC and learning rate, one row per epoch."""
    frame = pd.DataFrame(list(history))
    write_csv(path, frame.reindex(columns=list(HISTORY_COLUMNS)))


def write_curve(
    path: str | os.PathLike, points: Iterable[Mapping[str, Any]], x: str, y: str, model: str
) -> None:
    """One curve (ROC: fpr/tpr; PR: recall/precision) with a ``model`` column."""
    frame = pd.DataFrame(list(points)).reindex(columns=[x, y])
    frame.insert(0, "model", model)
    write_csv(path, frame)


def confusion_rows(
    y_true: Any, prob: Any, threshold: float, classes: Sequence[str]
) -> pd.DataFrame:
    """One ``actual, predicted`` row per image, the input of DVC's ``confusion`` template.

    An image is predicted positive when ``prob >= threshold``, the rule of the paper §4.1
    metrics. The rows are sorted: DVC's template counts them, so their order carries no
    information, and sorted rows change only where a count changes (a clean ``git diff``).

    Args:
        y_true: 0/1 labels.
        prob: probabilities of class 1.
        threshold: the decision threshold (chosen on validation data).
        classes: the names of class 0 and class 1, e.g. ``("benign", "malignant")``.

    Returns:
        A frame with columns ``actual`` and ``predicted`` holding class names.

    Raises:
        ValueError: for labels other than 0/1, inputs of different lengths or not two
            distinct class names.
    """
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape:
        raise ValueError(f"y_true and prob must be 1-D of one length, got {y.shape}, {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0/1 labels, got {np.unique(y)[:10]}")
    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"need two distinct class names, got {list(classes)}")
    names = np.asarray(classes, dtype=object)
    frame = pd.DataFrame(
        {"actual": names[y.astype(np.int64)], "predicted": names[(p >= threshold).astype(int)]}
    )
    return frame.sort_values(["actual", "predicted"], ignore_index=True)


def write_confusion(
    path: str | os.PathLike, y_true: Any, prob: Any, threshold: float, classes: Sequence[str]
) -> None:
    """Writes :func:`confusion_rows` as CSV (``dvc.yaml``: ``template: confusion``)."""
    write_csv(path, confusion_rows(y_true, prob, threshold, classes))
