"""Patient-bootstrap intervals: of every metric, and of two models' paired AUC difference."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mammocad.evaluate.metrics import _check, _metrics, roc_auc

logger = logging.getLogger(__name__)

#: Metrics that :func:`bootstrap_ci` resamples.
CI_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")


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
