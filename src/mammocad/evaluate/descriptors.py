"""The descriptor reference: ROC AUC of a rule scoring BI-RADS margins and shape, no pixels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mammocad.evaluate.bootstrap import _patient_resamples
from mammocad.evaluate.metrics import roc_auc

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
