"""The decision threshold, chosen on the validation split (:func:`choose_threshold`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from mammocad.evaluate.metrics import _check, pr_points, roc_points
from mammocad.registry import Registry

logger = logging.getLogger(__name__)

ThresholdFn = Callable[[np.ndarray, np.ndarray], float | None]
THRESHOLDS: Registry[ThresholdFn] = Registry("threshold method")


@THRESHOLDS.register("youden")
def _youden(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, thr = roc_points(y, p, drop_intermediate=False)
    # index 0 is the "+inf" point where nothing is called positive
    return _best_threshold(thr[1:], (tpr - fpr)[1:])


@THRESHOLDS.register("f1")
def _f1(y: np.ndarray, p: np.ndarray) -> float | None:
    if not y.any():
        return None
    precision, recall, thr = pr_points(y, p)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return _best_threshold(thr, f1)


def _best_threshold(thresholds: np.ndarray, score: np.ndarray) -> float:
    # Among equally good thresholds the highest wins: fewest positive calls.
    ties = np.flatnonzero(score == score.max())
    return float(thresholds[ties].max())


def choose_threshold(
    y_true: Any,
    prob: Any,
    method: Literal["youden", "f1", "fixed"] = "youden",
    fixed: float = 0.5,
) -> float:
    """Chooses the decision threshold on validation predictions (paper §4.1 metrics).

    An image is called positive when ``prob >= threshold``. ``youden`` maximises
    sensitivity + specificity − 1 (TPR − FPR) over the observed scores, ``f1`` maximises
    F1; ties go to the highest threshold. ``fixed`` returns ``fixed``, as does either
    method when the validation labels do not allow it (a single class), with a warning.

    Args:
        y_true: validation labels (0/1).
        prob: validation probabilities of class 1.
        method: ``"youden"``, ``"f1"`` or ``"fixed"``.
        fixed: the threshold of ``"fixed"`` and the fallback, in [0, 1].

    Raises:
        KeyError: for an unknown method, listing the valid ones.
        ValueError: for invalid labels, probabilities or ``fixed``.
    """
    if not 0.0 <= fixed <= 1.0:
        raise ValueError(f"fixed threshold must lie in [0, 1], got {fixed}")
    if method == "fixed":
        return float(fixed)
    fn = THRESHOLDS.get(method)
    y, p = _check(y_true, prob)
    threshold = fn(y, p)
    if threshold is None:
        logger.warning("threshold method %r undefined on one class; using %g", method, fixed)
        return float(fixed)
    return threshold
