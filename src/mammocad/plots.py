"""Plot data files for ``dvc plots`` (CSV) from training histories and evaluation curves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

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
