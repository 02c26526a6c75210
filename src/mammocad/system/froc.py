"""Lesion-level scores of the system: FROC curves of the heatmaps' candidate marks.

**Lesion level**, FROC (free-response ROC; Bunch et al. 1978, Chakraborty 1989): each
heatmap gives up to ``k`` candidate marks (:func:`mammocad.localize.peak_candidates`:
greedy peak picking with non-maximum suppression over a training-patch-sized window,
score = heatmap value at the peak). A candidate **detects a lesion when its peak lies
inside the lesion's outline** (mask): the acceptance rule of FROC studies with outlined
lesions, and the rule of the pointing game. A candidate inside no lesion is a false
positive, so every candidate on a normal image is one. A lesion hit by several candidates
is detected once, at the highest score among them; its further hits are neither true nor
false positives (the LUNA16 convention). Sweeping the score threshold gives sensitivity
(detected lesions / all lesions) against false positives per image (all images, normals
included); :meth:`Froc.sensitivity_at` reads the highest sensitivity at no more than a
given FP rate (no interpolation), reported at 0.25, 0.5, 1, 2 and 4 FPs per image. For the
cascade, the candidates of images the gate stops are dropped: those images contribute
neither false positives nor detections.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

#: False positives per image at which FROC sensitivities are reported.
FROC_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

#: The detection rule, as written into the metrics and the report.
DETECTION_RULE = (
    "a candidate detects a lesion when its peak lies inside the lesion's outline (mask); "
    "candidates inside no lesion are false positives (every candidate on a normal image); "
    "a lesion hit several times counts once, at its highest-scoring hit, and its further "
    "hits are ignored"
)


@dataclass(frozen=True)
class Froc:
    """A FROC curve: one operating point per distinct candidate score, descending.

    Attributes:
        thresholds: score thresholds (the first point, ``inf``, marks nothing).
        fp_per_image: false positives per image at each threshold.
        sensitivity: detected share of all lesions at each threshold (NaN without lesions).
        n_images: images the false positives are divided by.
        n_lesions: lesions the sensitivity is a share of.
    """

    thresholds: np.ndarray
    fp_per_image: np.ndarray
    sensitivity: np.ndarray
    n_images: int
    n_lesions: int

    def sensitivity_at(self, rate: float) -> float | None:
        """Highest sensitivity at no more than ``rate`` false positives per image.

        Beyond the curve's last point (all candidates marked) the sensitivity stays at
        its last value: there are no further marks. ``None`` without lesions.
        """
        if self.n_lesions == 0:
            return None
        ok = self.fp_per_image <= rate + 1e-12
        return float(self.sensitivity[ok].max())

    def rows(self) -> list[dict[str, float | None]]:
        """The curve as plot rows (threshold ``None`` for the first, empty point)."""
        return [
            {
                "threshold": float(t) if math.isfinite(t) else None,
                "fp_per_image": float(f),
                "sensitivity": float(s) if math.isfinite(s) else None,
            }
            for t, f, s in zip(self.thresholds, self.fp_per_image, self.sensitivity, strict=True)
        ]

    def summary(self, rates: Sequence[float] = FROC_RATES) -> dict[str, Any]:
        """Sensitivity at each rate, their mean, and the curve's extent, JSON-ready."""
        at = {f"{r:g}": self.sensitivity_at(r) for r in rates}
        values = [v for v in at.values() if v is not None]
        return {
            "sensitivity_at_fp": at,
            "mean_sensitivity": float(np.mean(values)) if values else None,
            "max_fp_per_image": float(self.fp_per_image[-1]),
            "max_sensitivity": self.sensitivity_at(math.inf),
            "n_images": self.n_images,
            "n_lesions": self.n_lesions,
        }


def froc_curve(
    scores: Sequence[float],
    hits: Sequence[Collection[Hashable]],
    lesions: Collection[Hashable],
    n_images: int,
) -> Froc:
    """The FROC curve of pooled candidates (see the module docstring for the rule).

    Args:
        scores: score of each candidate, over all images.
        hits: lesion ids each candidate detects (empty: a false positive).
        lesions: ids of all lesions, detected or not.
        n_images: images the candidates come from, those without lesions included.

    Returns:
        The curve, from ``(0, 0)`` at threshold ``inf`` to all candidates marked.

    Raises:
        ValueError: for lengths that differ, a hit on an unknown lesion or no images.
    """
    if len(scores) != len(hits):
        raise ValueError(f"{len(scores)} scores but {len(hits)} hit lists")
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    known = set(lesions)
    best: dict[Hashable, float] = {}
    fp = []
    for score, hit in zip(scores, hits, strict=True):
        s = float(score)
        if not hit:
            fp.append(s)
        for lesion in hit:
            if lesion not in known:
                raise ValueError(f"candidate hits unknown lesion {lesion!r}")
            best[lesion] = max(best.get(lesion, -math.inf), s)
    fp_sorted = np.sort(np.asarray(fp, dtype=np.float64))
    tp_sorted = np.sort(np.asarray(list(best.values()), dtype=np.float64))
    thresholds = np.unique(np.r_[fp_sorted, tp_sorted])[::-1]
    # counts of scores >= t, from the sorted arrays
    n_fp = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")
    n_tp = len(tp_sorted) - np.searchsorted(tp_sorted, thresholds, side="left")
    n_lesions = len(known)
    sens = n_tp / n_lesions if n_lesions else np.full(len(thresholds), np.nan)
    return Froc(
        thresholds=np.r_[np.inf, thresholds],
        fp_per_image=np.r_[0.0, n_fp / n_images],
        sensitivity=np.r_[0.0 if n_lesions else np.nan, sens],
        n_images=int(n_images),
        n_lesions=n_lesions,
    )


def system_frocs(
    images: pd.DataFrame,
    candidates: pd.DataFrame,
    lesions: pd.DataFrame,
    passed: Collection[str] | None = None,
) -> dict[str, Froc]:
    """FROC curves of the patch network alone and, given the gate, of the cascade.

    Only images whose findings are all outlined take part (``froc_eligible``): a mark on
    a finding without an outline could not be judged.

    Args:
        images: one row per image with ``image_id`` and ``froc_eligible``.
        candidates: one row per mark with ``image_id``, ``score`` and ``lesions`` (the
            lesion ids it detects).
        lesions: one row per outlined lesion with ``lesion_id`` and ``image_id``.
        passed: ids of the images the shallow CNN passes on; ``None``: no cascade curve.

    Returns:
        ``{"patch_network": Froc}``, plus ``"cascade"`` when ``passed`` is given.
    """
    eligible = set(images.loc[images["froc_eligible"].astype(bool), "image_id"])
    if not eligible:
        raise ValueError("no image is eligible for the FROC (normal or fully outlined)")
    marks = candidates[candidates["image_id"].isin(eligible)]
    targets = lesions.loc[lesions["image_id"].isin(eligible), "lesion_id"].tolist()
    out = {
        "patch_network": froc_curve(
            marks["score"].tolist(), marks["lesions"].tolist(), targets, len(eligible)
        )
    }
    if passed is not None:
        kept = marks[marks["image_id"].isin(set(passed))]
        out["cascade"] = froc_curve(
            kept["score"].tolist(), kept["lesions"].tolist(), targets, len(eligible)
        )
    return out
