"""Test-set metrics of paper §4.1, with thresholds, confidence intervals and plot data.

Paper §4.1 reports accuracy, precision and recall (equations 1–3) with P = malignant
(or cancerous) and N = benign (or normal). Those need a decision threshold on the
predicted probability; it is chosen on the validation split (:func:`choose_threshold`) and
applied unchanged to the test split. Threshold-free ROC AUC and average precision, the
specificity, F1, patient-level bootstrap intervals (images of one patient are not
independent), ROC/PR curve data for DVC plots and model size/latency (the paper's
argument for MobileNet, §4.3) complete the picture.

Undefined values (an AUC on a single class, a recall without positives) are ``None``,
never an exception or a NaN, so metric files stay valid JSON.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.metrics import precision_recall_curve, roc_curve
from torch import nn
from tqdm.auto import tqdm

from mammocad.registry import Registry
from mammocad.timing import time_calls

logger = logging.getLogger(__name__)

#: Metrics that :func:`bootstrap_ci` resamples.
CI_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")

ThresholdFn = Callable[[np.ndarray, np.ndarray], float | None]
THRESHOLDS: Registry[ThresholdFn] = Registry("threshold method")


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
    ranks = rankdata(np.asarray(prob, dtype=np.float64))
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
    p = np.asarray(prob, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    # one operating point per distinct score: tied images enter together
    last_of_tie = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]
    tp = np.cumsum(y_sorted)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# --------------------------------------------------------------------------- thresholds


@THRESHOLDS.register("youden")
def _youden(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=False)
    # index 0 is sklearn's "+inf" point where nothing is called positive
    return _best_threshold(thr[1:], (tpr - fpr)[1:])


@THRESHOLDS.register("f1")
def _f1(y: np.ndarray, p: np.ndarray) -> float | None:
    if not y.any():
        return None
    precision, recall, thr = precision_recall_curve(y, p)
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


# --------------------------------------------------------------------------- bootstrap


def bootstrap_ci(
    y_true: Any,
    prob: Any,
    groups: Any,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Percentile bootstrap intervals of every metric, resampling patients.

    Images of one patient (both views, both breasts, several lesions) are correlated;
    resampling images would treat them as independent and give intervals that are too
    narrow. Each replicate draws as many patients as there are, with replacement, and
    takes all their images. A replicate in which a metric is undefined (e.g. no malignant
    patch drawn) is skipped for that metric only.

    Args:
        y_true: labels (0/1).
        prob: probabilities of class 1.
        groups: patient id of each image.
        threshold: the fixed decision threshold (chosen on validation data).
        n_boot: number of replicates.
        seed: seed of the resampling generator; the same seed gives the same intervals.
        alpha: 1 − confidence level (0.05: 95 % intervals).

    Returns:
        For each metric of :data:`CI_METRICS`: ``{"low", "high", "n_valid"}``, the
        ``alpha/2`` and ``1 − alpha/2`` percentiles over the ``n_valid`` replicates where
        the metric was defined (``low``/``high`` are ``None`` when none was). A nested
        mapping rather than a tuple so that the values show up in ``dvc metrics``.

    Raises:
        ValueError: for invalid inputs, ``n_boot < 1`` or ``alpha`` outside (0, 1).
    """
    y, p = _check(y_true, prob)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have one entry per image: {g.shape} vs {y.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    values: dict[str, list[float]] = {m: [] for m in CI_METRICS}
    replicates = _patient_resamples(g, n_boot, seed)
    for idx in tqdm(replicates, total=n_boot, desc="bootstrap", unit="rep", disable=None,
                    leave=False):  # fmt: skip
        metrics = _metrics(y[idx], p[idx], threshold)
        for name in CI_METRICS:
            if metrics[name] is not None:
                values[name].append(metrics[name])

    out = {}
    for name in CI_METRICS:
        vals = np.asarray(values[name])
        if len(vals):
            low, high = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
            out[name] = {"low": float(low), "high": float(high), "n_valid": len(vals)}
        else:
            out[name] = {"low": None, "high": None, "n_valid": 0}
        if len(vals) < n_boot:
            logger.info("bootstrap %s defined in %d of %d replicates", name, len(vals), n_boot)
    return out


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
        fpr, tpr, thr = roc_curve(y, p)
        roc = [
            {"fpr": float(f), "tpr": float(t), "threshold": _finite(th)}
            for f, t, th in zip(fpr, tpr, thr, strict=True)
        ]
    if y.any():
        precision, recall, thr = precision_recall_curve(y, p)
        thresholds = [*thr.tolist(), math.inf]
        pr = [
            {"precision": float(pp), "recall": float(r), "threshold": _finite(th)}
            for pp, r, th in zip(precision, recall, thresholds, strict=True)
        ]
    return {"roc": roc, "pr": pr}


# --------------------------------------------------------------------------- size and speed


@torch.inference_mode()
def latency_ms(
    model: nn.Module,
    input_shape: Sequence[int],
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Batch-1 inference latency, the deployment argument of paper §4.3 for MobileNet.

    Times ``repeats`` forward passes of one random image (after ``warmup`` untimed ones)
    in eval mode on the model's device; the model's mode and the thread count are
    restored afterwards.

    Args:
        model: the classifier.
        input_shape: ``(C, H, W)`` of one image, or ``(1, C, H, W)``.
        repeats: timed passes.
        warmup: untimed passes first (allocations, kernel selection).
        threads: CPU threads during timing; ``None`` keeps the current setting.

    Returns:
        ``{"median_ms", "p90_ms", "mean_ms", "repeats", "threads"}``.

    Raises:
        ValueError: for a batch other than 1, ``repeats < 1`` or ``warmup < 0``.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be (C, H, W) or (1, C, H, W), got {input_shape}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = next(model.parameters(), torch.zeros(0)).device
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    was_training = model.training
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    model.eval()
    try:
        timed = time_calls(lambda: model(x), repeats, warmup, sync)
        used_threads = torch.get_num_threads()
    finally:
        model.train(was_training)
        torch.set_num_threads(previous_threads)
    return {**timed, "threads": used_threads}


def model_file_mb(path: str | os.PathLike) -> float:
    """Size of a saved model file in MiB (2^20 bytes), for the memory claim of paper §4.3.

    Raises:
        FileNotFoundError: if the file is missing.
    """
    return os.path.getsize(path) / 2**20


# --------------------------------------------------------------------------- references


def _patient_resamples(groups: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of ``n_boot`` patient-bootstrap replicates (see :func:`bootstrap_ci`).

    Each replicate draws as many patients as there are, with replacement, and takes all
    their images: the patients' images sorted into contiguous slices are concatenated
    without a Python loop.
    """
    _, group_of = np.unique(groups, return_inverse=True)
    by_group = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        lengths = sizes[drawn]
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield by_group[np.repeat(starts[drawn], lengths) + offsets]


def auc_difference(
    y_true: Any,
    prob_a: Any,
    prob_b: Any,
    groups: Any,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """ROC AUC of model A minus model B on the same images, with a paired interval.

    Both models are scored on each replicate's patients, so the interval reflects the
    difference between the models rather than the two AUCs' own spreads (which overlap
    far more than the difference varies).

    Args:
        y_true: labels (0/1) of the shared test images.
        prob_a: model A's probabilities of class 1.
        prob_b: model B's, for the same images in the same order.
        groups: patient id of each image (the resampling unit).
        n_boot: patient-bootstrap replicates.
        seed: seed of the resampling generator.
        alpha: 1 − confidence level.

    Returns:
        ``{"auc_a", "auc_b", "difference", "low", "high", "n_valid"}``; the interval is
        ``None`` where no replicate held both classes.

    Raises:
        ValueError: for inputs of different lengths.
    """
    y, pa = _check(y_true, prob_a)
    _, pb = _check(y_true, prob_b)
    g = np.asarray(groups)
    if g.shape != y.shape:
        raise ValueError(f"groups must have one entry per image: {g.shape} vs {y.shape}")
    auc_a, auc_b = roc_auc(y, pa), roc_auc(y, pb)
    diffs = []
    for idx in _patient_resamples(g, n_boot, seed):
        a, b = roc_auc(y[idx], pa[idx]), roc_auc(y[idx], pb[idx])
        if a is not None and b is not None:
            diffs.append(a - b)
    low = high = None
    if diffs:
        low, high = (float(v) for v in np.quantile(diffs, [alpha / 2, 1 - alpha / 2]))
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": None if auc_a is None or auc_b is None else auc_a - auc_b,
        "low": low,
        "high": high,
        "n_valid": len(diffs),
    }


#: Suspicion rank of BI-RADS mass margins and shapes (ACR BI-RADS atlas: circumscribed
#: margins and oval or round shapes suggest benign masses; spiculated margins and irregular
#: shapes malignant ones).
MARGIN_RANK = {"CIRCUMSCRIBED": 0, "OBSCURED": 1, "MICROLOBULATED": 2, "ILL_DEFINED": 3,
               "SPICULATED": 4}  # fmt: skip
SHAPE_RANK = {"ROUND": 0, "OVAL": 0, "LOBULATED": 1, "IRREGULAR": 2,
              "ARCHITECTURAL_DISTORTION": 2}  # fmt: skip


def _rank(value: Any, table: Mapping[str, int]) -> int | None:
    """The highest rank among the parts of a compound descriptor (``A-B``), if any."""
    parts = [table[p] for p in str(value).strip().upper().split("-") if p in table]
    return max(parts) if parts else None


def descriptor_score(shape: Any, margins: Any) -> float | None:
    """A radiologist's rule: suspicion from the reported BI-RADS shape and margins.

    The score is the margin rank plus the shape rank (see :data:`MARGIN_RANK`,
    :data:`SHAPE_RANK`); ``None`` where neither descriptor is known. It reads no pixels:
    its ROC AUC on a test set is the signal that the descriptors alone carry, a reference
    for what the image models reach.
    """
    m, s = _rank(margins, MARGIN_RANK), _rank(shape, SHAPE_RANK)
    if m is None and s is None:
        return None
    return float((m or 0) + (s or 0))


def descriptor_reference(
    frame: Any, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict[str, Any] | None:
    """ROC AUC, with its patient-bootstrap interval, of :func:`descriptor_score`.

    Args:
        frame: test ROI rows with ``pathology`` (``BENIGN``/``MALIGNANT``),
            ``lesion_shape``, ``lesion_margins`` and ``patient_id``.
        n_boot: patient-bootstrap replicates.
        seed: seed of the resampling generator.
        alpha: 1 − confidence level.

    Returns:
        ``{"auc", "low", "high", "n", "n_scored"}``, or ``None`` where no row has a
        descriptor (e.g. a source without BI-RADS descriptors).
    """
    scores = [
        descriptor_score(s, m)
        for s, m in zip(frame["lesion_shape"], frame["lesion_margins"], strict=True)
    ]
    keep = np.array([s is not None for s in scores])
    if not keep.any():
        return None
    y = (np.asarray(frame["pathology"]) == "MALIGNANT").astype(int)[keep]
    p = np.array([s for s in scores if s is not None], dtype=float)
    g = np.asarray(frame["patient_id"])[keep]
    aucs = [roc_auc(y[i], p[i]) for i in _patient_resamples(g, n_boot, seed)]
    aucs = [a for a in aucs if a is not None]
    low = high = None
    if aucs:
        low, high = (float(v) for v in np.quantile(aucs, [alpha / 2, 1 - alpha / 2]))
    return {
        "auc": roc_auc(y, p),
        "low": low,
        "high": high,
        "n": len(frame),
        "n_scored": int(keep.sum()),
    }
