"""Paper §4.1's metrics at a decision threshold, ranking metrics, confusion and curve data."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- validation


def _check(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    p = np.asarray(prob, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1 or len(y) != len(p):
        raise ValueError(f"y_true and prob must be 1-D of one length, got {y.shape}, {p.shape}")
    if len(y) == 0:
        raise ValueError("no predictions to evaluate")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"y_true must hold 0/1 labels, got {np.unique(y)[:10]}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("prob must hold finite probabilities in [0, 1]")
    return y.astype(np.int64), p


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


# --------------------------------------------------------------------------- ranking metrics
# Written with NumPy alone, to scikit-learn's and SciPy's definitions (the tests compare
# them): importing ``sklearn.metrics`` costs every stage about two seconds.


def average_ranks(values: Any) -> np.ndarray:
    """Ranks from 1, ties given the mean of their ranks (``scipy.stats.rankdata``)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty(len(x), dtype=np.intp)
    inverse[order] = np.arange(len(x))
    sorted_x = x[order]
    first = np.r_[True, sorted_x[1:] != sorted_x[:-1]]
    group = np.cumsum(first)[inverse]
    bounds = np.r_[np.flatnonzero(first), len(x)]
    return 0.5 * (bounds[group] + bounds[group - 1] + 1)


def counts_at_thresholds(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """False and true positives when every distinct score, descending, is the threshold.

    Returns:
        ``(fps, tps, thresholds)`` as floats, one entry per distinct score: the counts of
        images scored at least that high.
    """
    order = np.argsort(-p, kind="stable")  # the order within ties changes no count
    scores, truth = p[order], y[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(truth)[last]
    fps = 1 + last - tps
    return fps, tps, scores[last]


def roc_points(
    y: np.ndarray, p: np.ndarray, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the ROC curve (``sklearn.metrics.roc_curve``).

    The first point, nothing called positive, has threshold ``inf``; with
    ``drop_intermediate`` the points inside straight segments are left out. Both classes
    must be present.
    """
    fps, tps, thresholds = counts_at_thresholds(y, p)
    if drop_intermediate and len(fps) > 2:
        corner = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[corner], tps[corner], thresholds[corner]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    return fps / fps[-1], tps / tps[-1], np.r_[np.inf, thresholds]


def pr_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(precision, recall, thresholds)`` (``sklearn.metrics.precision_recall_curve``).

    Recall decreases along the arrays, which end with the point (precision 1, recall 0)
    that has no threshold, so ``thresholds`` is one shorter. There must be a positive.
    """
    fps, tps, thresholds = counts_at_thresholds(y, p)
    called = tps + fps
    precision = np.divide(tps, called, out=np.zeros_like(tps), where=called != 0)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def roc_auc(y_true: Any, prob: Any) -> float | None:
    """Area under the ROC curve, ties counted as half (the Mann–Whitney statistic).

    Returns:
        The AUC, or ``None`` when ``y_true`` holds a single class (undefined).
    """
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(prob)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(y_true: Any, prob: Any) -> float | None:
    """Average precision: ``Σ (R_k − R_{k−1}) P_k`` over distinct thresholds, descending.

    The area under the precision–recall curve without interpolation, as scikit-learn's
    ``average_precision_score`` defines it.

    Returns:
        The average precision, or ``None`` when there are no positives (undefined).
    """
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return None
    # one operating point per distinct score: tied images enter together
    fps, tps, _ = counts_at_thresholds(y, np.asarray(prob, dtype=np.float64))
    precision = tps / (tps + fps)
    recall = tps / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# --------------------------------------------------------------------------- metrics


def _counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tp = int(np.count_nonzero(pred & (y == 1)))
    fp = int(np.count_nonzero(pred & (y == 0)))
    fn = int(np.count_nonzero(~pred & (y == 1)))
    tn = len(y) - tp - fp - fn
    return tp, fp, tn, fn


def _metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    tp, fp, tn, fn = _counts(y, p >= threshold)
    # No positive calls: precision is 0/0; 0.0 is the value the paper's eq. 2 tends to and
    # the one that penalises a classifier that never says "malignant".
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = _ratio(tp, tp + fn)
    if recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(y),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": f1,
        "roc_auc": roc_auc(y, p),
        "pr_auc": average_precision(y, p),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def binary_metrics(y_true: Any, prob: Any, threshold: float) -> dict[str, Any]:
    """Accuracy, precision and recall of paper §4.1 (eqs. 1–3) and more, at ``threshold``.

    Args:
        y_true: labels, 1 = positive (malignant / cancerous).
        prob: probabilities of class 1; ``prob >= threshold`` is called positive.
        threshold: the decision threshold, usually from :func:`choose_threshold`.

    Returns:
        ``accuracy``, ``precision``, ``recall`` (sensitivity), ``specificity``, ``f1``,
        ``roc_auc``, ``pr_auc`` (average precision), the counts ``tp``, ``fp``, ``tn``,
        ``fn``, and ``n``, ``n_positive``, ``threshold``. Undefined values are ``None``:
        recall, F1 and PR AUC without positives, specificity without negatives, ROC AUC
        with one class. Precision without positive calls is ``0.0``.

    Raises:
        ValueError: for empty, mismatched or invalid inputs.
    """
    y, p = _check(y_true, prob)
    out = _metrics(y, p, float(threshold))
    out.update(n=len(y), n_positive=int(y.sum()), threshold=float(threshold))
    return out


def confusion(y_true: Any, y_pred: Any) -> list[list[int]]:
    """Confusion matrix ``[[tn, fp], [fn, tp]]`` of 0/1 labels and predictions (§4.1)."""
    y = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if y.shape != pred.shape or y.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length: {y.shape}, {pred.shape}")
    if not (np.isin(y, (0, 1)).all() and np.isin(pred, (0, 1)).all()):
        raise ValueError("y_true and y_pred must hold 0/1 labels")
    tp, fp, tn, fn = _counts(y.astype(np.int64), pred.astype(bool))
    return [[tn, fp], [fn, tp]]


# --------------------------------------------------------------------------- plot data


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def curves(y_true: Any, prob: Any) -> dict[str, list[dict[str, float | None]]]:
    """ROC and precision–recall curves as rows for DVC plots.

    Returns:
        ``{"roc": [{"fpr", "tpr", "threshold"}, ...], "pr": [{"precision", "recall",
        "threshold"}, ...]}``. The ROC's first point (nothing called positive) and the PR
        curve's last point (recall 0) have no threshold and carry ``None``. A curve that
        is undefined (ROC with one class, PR without positives) is an empty list.
    """
    y, p = _check(y_true, prob)
    roc: list[dict[str, float | None]] = []
    pr: list[dict[str, float | None]] = []
    if len(np.unique(y)) == 2:
        fpr, tpr, thr = roc_points(y, p)
        roc = [
            {"fpr": float(f), "tpr": float(t), "threshold": _finite(th)}
            for f, t, th in zip(fpr, tpr, thr, strict=True)
        ]
    if y.any():
        precision, recall, thr = pr_points(y, p)
        thresholds = [*thr.tolist(), math.inf]
        pr = [
            {"precision": float(pp), "recall": float(r), "threshold": _finite(th)}
            for pp, r, th in zip(precision, recall, thresholds, strict=True)
        ]
    return {"roc": roc, "pr": pr}
