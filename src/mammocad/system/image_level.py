"""Image-level scores of the system: the shallow CNN, the patch network and their cascades.

**Image level** (is this mammogram suspicious?), ROC AUC with a patient-level bootstrap
interval (:func:`mammocad.evaluate.roc_auc`, :func:`mammocad.evaluate.bootstrap_ci`), for

* ``shallow_cnn``: the shallow CNN's cancerous probability ``p`` (Fig. 2);
* ``patch_network``: ``m``, the maximum of the patch network's malignancy heatmap inside
  the breast (the heatmap is zero outside it), i.e. the most suspicious patch-sized
  window of the image;
* ``cascade`` (Fig. 1, gated): the shallow CNN's decision, with the threshold ``t`` it was
  given on the validation split by the ``train_shallow`` stage, decides whether the
  heatmap is consulted: ``s = 0.5 + 0.5·m`` where ``p ≥ t`` (passed on to MobileNet),
  ``s = 0.5·p/t`` where ``p < t`` (called non-cancerous). Every image the gate passes
  ranks above every image it stops; passed images are ranked by the heatmap, stopped ones
  by the shallow CNN's own probability, so the ROC curve is the cascade's and complete;
* ``cascade_product``: ``p·m``, a soft cascade without a threshold, for comparison.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mammocad.evaluate import bootstrap_ci, roc_auc
from mammocad.models.data import label_cancerous

#: Image-level systems in the order they are reported.
SYSTEMS: tuple[str, ...] = ("shallow_cnn", "patch_network", "cascade", "cascade_product")


def cascade_scores(p_shallow: Any, peak: Any, threshold: float) -> dict[str, np.ndarray]:
    """The cascade's image scores from the shallow CNN and the heatmap (paper Fig. 1).

    Args:
        p_shallow: the shallow CNN's cancerous probabilities ``p``.
        peak: the heatmaps' maxima inside the breast ``m``, in [0, 1].
        threshold: the shallow CNN's decision threshold ``t`` (chosen on validation).

    Returns:
        ``{"cascade": gated score, "cascade_product": p·m, "passed": p >= t}``; the gated
        score is ``0.5 + 0.5·m`` where ``p ≥ t`` and ``0.5·p/t`` where ``p < t``.
    """
    p = np.asarray(p_shallow, dtype=np.float64)
    m = np.asarray(peak, dtype=np.float64)
    if p.shape != m.shape:
        raise ValueError(f"p_shallow and peak differ in shape: {p.shape} vs {m.shape}")
    passed = p >= threshold
    stopped = 0.5 * np.divide(p, threshold, out=np.zeros_like(p), where=~passed)
    return {
        "cascade": np.where(passed, 0.5 + 0.5 * m, stopped),
        "cascade_product": p * m,
        "passed": passed,
    }


def image_auc(
    y_true: Any, score: Any, groups: Any, n_boot: int, seed: int, alpha: float = 0.05
) -> dict[str, Any]:
    """ROC AUC with its patient-level percentile bootstrap interval.

    Returns:
        ``{"auc", "low", "high", "n_valid"}`` (``None`` where undefined).
    """
    y = np.asarray(y_true).astype(np.int64)
    s = np.asarray(score, dtype=np.float64)
    # the threshold only matters for the thresholded metrics, which are not kept
    ci = bootstrap_ci(y, s, groups, 0.5, n_boot=n_boot, seed=seed, alpha=alpha)["roc_auc"]
    return {"auc": roc_auc(y, s), **ci}


def system_metrics(
    images: pd.DataFrame,
    threshold: float,
    positive: str,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Image-level AUCs of the shallow CNN, the patch network and the cascades.

    Args:
        images: one row per test mammogram with ``patient_id``, ``pathology``,
            ``p_shallow`` and ``peak`` columns.
        threshold: the shallow CNN's validation-chosen decision threshold.
        positive: ``abnormal`` (any finding) or ``malignant``: which images are positive,
            as the shallow CNN was trained (``shallow.positive``).
        n_boot: bootstrap replicates.
        seed: bootstrap seed.
        alpha: 1 − confidence level.

    Returns:
        ``{"positive", "n_images", "n_patients", "n_positive", "auc": {system: {"auc",
        "low", "high", "n_valid"}}, "gate": {...}}``.
    """
    label = partial(label_cancerous, positive=positive)
    y = np.array([label(r) for r in images.to_dict("records")], dtype=np.int64)
    groups = images["patient_id"].astype(str).to_numpy()
    p = images["p_shallow"].to_numpy(dtype=np.float64)
    m = images["peak"].to_numpy(dtype=np.float64)
    cascade = cascade_scores(p, m, threshold)
    scores = {
        "shallow_cnn": p,
        "patch_network": m,
        "cascade": cascade["cascade"],
        "cascade_product": cascade["cascade_product"],
    }
    passed = cascade["passed"]
    return {
        "positive": positive,
        "n_images": len(images),
        "n_patients": len(set(groups)),
        "n_positive": int(y.sum()),
        "auc": {name: image_auc(y, scores[name], groups, n_boot, seed, alpha) for name in SYSTEMS},
        "gate": {
            "threshold": float(threshold),
            "passed": int(passed.sum()),
            "passed_positive": int((passed & (y == 1)).sum()),
            "passed_negative": int((passed & (y == 0)).sum()),
        },
    }


#: The cascade scores, as written into the metrics and the report.
CASCADE_DEFINITION = (
    "cascade = 0.5 + 0.5*m where p >= t (the shallow CNN passes the image to the patch "
    "network), 0.5*p/t where p < t; p: shallow CNN probability, t: its decision threshold "
    "chosen on the validation split, m: maximum of the patch network's heatmap inside the "
    "breast; cascade_product = p*m"
)
