"""The whole system of paper Fig. 1 on full mammograms: image-level AUCs and lesion FROC.

Paper Fig. 1: "the first shallow CNN take pre-process full mammogram and performed binary
classification between cancerous and non-cancerous. If cancer present in input then is
further pass to MobileNet based model [...] to localize cancer in full mammogram, we used
class activation mapping technique." The paper scores the two networks apart (Table 1 on
ROI patches); this package scores the system on the test split's full mammograms, normals
included, in the two ways the CAD literature does: at the image level
(:mod:`mammocad.system.image_level`) and at the lesion level, by FROC
(:mod:`mammocad.system.froc`). :mod:`mammocad.system.shallow` gives the shallow CNN's
probability of each image both need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mammocad.models.data import label_cancerous
from mammocad.system.froc import (
    DETECTION_RULE,
    FROC_RATES,
    Froc,
    froc_curve,
    system_frocs,
)
from mammocad.system.image_level import (
    CASCADE_DEFINITION,
    SYSTEMS,
    cascade_scores,
    image_auc,
    system_metrics,
)
from mammocad.system.shallow import (
    attach_shallow,
    load_shallow,
    shallow_images,
    shallow_probabilities,
)

__all__ = [
    "CASCADE_DEFINITION",
    "DETECTION_RULE",
    "FROC_RATES",
    "SYSTEMS",
    "Froc",
    "SystemResult",
    "attach_shallow",
    "cascade_scores",
    "evaluate_system",
    "froc_curve",
    "image_auc",
    "load_shallow",
    "shallow_images",
    "shallow_probabilities",
    "system_frocs",
    "system_metrics",
]


@dataclass
class SystemResult:
    """The system's scores on the test mammograms.

    Attributes:
        metrics: JSON-ready: image-level AUCs (:func:`system_metrics`), ``froc`` (each
            curve's :meth:`Froc.summary`), the definitions and the heatmap time per image.
        frocs: the FROC curves by system.
        images: per image: ids, labels, ``p_shallow``, ``peak``, both cascade scores and
            whether the gate passed it.
    """

    metrics: dict[str, Any]
    frocs: dict[str, Froc]
    images: pd.DataFrame


def evaluate_system(
    images: pd.DataFrame,
    candidates: pd.DataFrame,
    lesions: pd.DataFrame,
    threshold: float,
    positive: str,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> SystemResult:
    """Paper Fig. 1 end to end: image-level AUCs and FROC curves (module docstring).

    Args:
        images: one row per test mammogram, as
            :attr:`mammocad.localize.LocalizeResult.images` with ``p_shallow`` attached
            (:func:`attach_shallow`).
        candidates: the heatmaps' candidate marks
            (:attr:`mammocad.localize.LocalizeResult.candidates`).
        lesions: the outlined lesions (:attr:`mammocad.localize.LocalizeResult.lesions`).
        threshold: the shallow CNN's validation-chosen decision threshold.
        positive: ``abnormal`` or ``malignant`` (``shallow.positive``).
        n_boot: bootstrap replicates of the AUC intervals.
        seed: bootstrap seed.
        alpha: 1 − confidence level.
    """
    metrics = system_metrics(images, threshold, positive, n_boot, seed, alpha)
    cascade = cascade_scores(images["p_shallow"], images["peak"], threshold)
    # the seconds go to the timing metrics below, not into the per-image table
    scored = images.drop(columns=["heatmap_s"]).assign(
        label=[label_cancerous(r, positive) for r in images.to_dict("records")],
        cascade=cascade["cascade"],
        cascade_product=cascade["cascade_product"],
        passed=cascade["passed"],
    )
    passed = scored.loc[scored["passed"], "image_id"]
    frocs = system_frocs(images, candidates, lesions, passed)
    seconds = images["heatmap_s"].to_numpy(dtype=np.float64)
    metrics.update(
        froc={name: curve.summary() for name, curve in frocs.items()},
        froc_rates=list(FROC_RATES),
        detection_rule=DETECTION_RULE,
        cascade_definition=CASCADE_DEFINITION,
        n_lesions_by_type={
            str(k): int(v) for k, v in lesions["abnormality_type"].value_counts().items()
        },
        heatmap_seconds={
            "median": float(np.median(seconds)),
            "mean": float(np.mean(seconds)),
            "max": float(np.max(seconds)),
        },
    )
    return SystemResult(metrics, frocs, scored)
