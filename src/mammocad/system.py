"""The whole system of paper Fig. 1 on full mammograms: image-level AUCs and lesion FROC.

Paper Fig. 1: "the first shallow CNN take pre-process full mammogram and performed binary
classification between cancerous and non-cancerous. If cancer present in input then is
further pass to MobileNet based model [...] to localize cancer in full mammogram, we used
class activation mapping technique." The paper scores the two networks apart (Table 1 on
ROI patches); this module scores the system on the test split's full mammograms, normals
included, in the two ways the CAD literature does:

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
import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mammocad.checkpoint import load_checkpoint
from mammocad.evaluate import bootstrap_ci, roc_auc
from mammocad.models.data import ImageSet, label_cancerous
from mammocad.models.shallow import ShallowCNN, shallow_from_checkpoint
from mammocad.train import predict_proba

#: False positives per image at which FROC sensitivities are reported.
FROC_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

#: Image-level systems in the order they are reported.
SYSTEMS: tuple[str, ...] = ("shallow_cnn", "patch_network", "cascade", "cascade_product")

#: The detection rule, as written into the metrics and the report.
DETECTION_RULE = (
    "a candidate detects a lesion when its peak lies inside the lesion's outline (mask); "
    "candidates inside no lesion are false positives (every candidate on a normal image); "
    "a lesion hit several times counts once, at its highest-scoring hit, and its further "
    "hits are ignored"
)


# --------------------------------------------------------------------------- FROC


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


# --------------------------------------------------------------------------- image level


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
    scored = images.assign(
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


# --------------------------------------------------------------------------- the shallow CNN


def attach_shallow(images: pd.DataFrame, frame: pd.DataFrame, prob: Any) -> pd.DataFrame:
    """``images`` with the shallow CNN's probability of each image as ``p_shallow``.

    The heatmaps are computed on the enhanced full images and the shallow CNN reads their
    down-sized copies from the ``patches`` stage; both manifests carry the enhanced image's
    id, so the two are joined on ``image_id``, and patient and pathology must agree.

    Args:
        images: one row per heatmap with ``image_id``, ``patient_id`` and ``pathology``.
        frame: the rows the shallow CNN read (split/patches manifest), in ``prob``'s order.
        prob: the shallow CNN's probabilities.

    Raises:
        ValueError: when the two sets of images differ or a patient or pathology
            disagrees, naming an example.
    """
    shallow = pd.DataFrame({
        "image_id": frame["image_id"].astype(str).to_numpy(),
        "shallow_patient": frame["patient_id"].astype(str).to_numpy(),
        "shallow_pathology": frame["pathology"].astype(str).to_numpy(),
        "p_shallow": np.asarray(prob, dtype=np.float64),
    })  # fmt: skip
    ours, theirs = set(images["image_id"].astype(str)), set(shallow["image_id"])
    if ours != theirs or len(shallow) != len(theirs):
        diff = sorted(ours ^ theirs)
        raise ValueError(
            f"the shallow CNN's images differ from the heatmaps' ({len(theirs)} vs "
            f"{len(ours)}; e.g. {diff[:3]}, or duplicate ids)"
        )
    out = images.assign(image_id=images["image_id"].astype(str)).merge(
        shallow, on="image_id", how="left", validate="one_to_one"
    )
    bad = out[
        (out["patient_id"].astype(str) != out["shallow_patient"])
        | (out["pathology"].astype(str) != out["shallow_pathology"])
    ]
    if len(bad):
        raise ValueError(
            f"{bad['image_id'].iloc[0]}: patient or pathology differs between the enhanced "
            "and the patches manifests"
        )
    return out.drop(columns=["shallow_patient", "shallow_pathology"])


def load_shallow(path: str | os.PathLike) -> tuple[ShallowCNN, dict[str, Any]]:
    """Rebuilds the shallow CNN of a ``train_shallow`` checkpoint, in evaluation mode."""
    ckpt = load_checkpoint(path)
    return shallow_from_checkpoint(ckpt), ckpt


def shallow_probabilities(
    model: torch.nn.Module, ckpt: Mapping[str, Any], frame: pd.DataFrame, root: Path
) -> np.ndarray:
    """The shallow CNN's cancerous probabilities for the down-sized full images of ``frame``.

    The images are those the ``patches`` stage wrote (``root``-relative ``image_path``),
    normalised with the checkpoint's mean and standard deviation, exactly as
    ``train_shallow`` evaluated them.
    """
    norm = ckpt["config"]["input"]
    positive = ckpt["config"]["shallow"]["positive"]
    images = ImageSet(
        frame,
        root,
        partial(label_cancerous, positive=positive),
        mean=norm["mean"],
        std=norm["std"],
        desc="load shallow",
    )
    with torch.no_grad():
        return predict_proba(model, images)
