"""Patient-disjoint, label-stratified train/validation/test split (paper §3.1: 80/20).

Split before augmenting, and split by patient: CC and MLO views of one breast, or
augmented copies of one image, on both sides of a split inflate every metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from mammocad.manifest import PATHOLOGIES, SEVERITY

log = logging.getLogger(__name__)

#: Manifest columns the split stage reads.
USED_COLUMNS = ("patient_id", "pathology", "kind")


@dataclass(frozen=True)
class SplitConfig:
    """The split stage.

    Attributes:
        method: ``patient`` (seeded, patient-disjoint, stratified) or ``official``
            (CBIS-DDSM's own train/test files, made patient-disjoint).
        test_fraction: share of patients in the test split (``patient`` method).
        val_fraction: share of the training patients held out for validation
            (checkpoint selection, early stopping, decision threshold); never the test set.
    """

    method: Literal["patient", "official"] = "patient"
    test_fraction: float = 0.2
    val_fraction: float = 0.15

    def __post_init__(self) -> None:
        for name in ("test_fraction", "val_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"split.{name} must be in [0, 1), got {value}")


def patient_labels(manifest: pd.DataFrame) -> pd.Series:
    """Each patient's most severe pathology over all their images (the stratum)."""
    known = manifest["pathology"].isin(PATHOLOGIES)
    if not known.all():
        bad = sorted(set(manifest.loc[~known, "pathology"]))
        raise ValueError(f"unknown pathology values in manifest: {bad}")
    sev = manifest["pathology"].map(SEVERITY)
    inverse = {SEVERITY[p]: p for p in PATHOLOGIES}
    return sev.groupby(manifest["patient_id"]).max().map(inverse)


def stratified_patient_split(
    labels: pd.Series, fraction: float, rng: np.random.Generator
) -> set[str]:
    """Draws ``fraction`` of the patients of every stratum, rounding per stratum.

    Args:
        labels: patient id → stratum label.
        fraction: share of patients to draw from each stratum.
        rng: the seeded generator.

    Returns:
        The drawn patient ids.
    """
    chosen: set[str] = set()
    for _, group in sorted(labels.groupby(labels), key=lambda kv: str(kv[0])):
        ids = sorted(group.index.astype(str))
        n = int(round(len(ids) * fraction))
        if fraction > 0 and n == 0 and len(ids) > 1:
            n = 1
        chosen.update(rng.permutation(ids)[:n].tolist())
    return chosen


def assign_splits(manifest: pd.DataFrame, cfg: SplitConfig, seed: int) -> pd.DataFrame:
    """Adds a ``split`` column (``train``, ``val`` or ``test``) to every manifest row.

    Every image of a patient lands in the same split.

    Args:
        manifest: rows with ``patient_id`` and ``pathology`` (and ``official_split`` for
            the ``official`` method).
        cfg: the split settings.
        seed: random seed.

    Returns:
        A copy of ``manifest`` with the ``split`` column.
    """
    rng = np.random.default_rng(seed)
    labels = patient_labels(manifest)
    if cfg.method == "patient":
        test = stratified_patient_split(labels, cfg.test_fraction, rng)
    else:
        sides = manifest.groupby("patient_id")["official_split"].agg(set)
        both = sorted(p for p, s in sides.items() if len(s) > 1)
        if both:
            # CBIS-DDSM's official files put some patients on both sides (31 of 1,566):
            # they go wholly to test so that no test patient is ever trained on.
            log.warning("%d patients are in both official splits; kept in test only", len(both))
        test = {str(p) for p, s in sides.items() if "test" in s}
    train_labels = labels[~labels.index.astype(str).isin(test)]
    val = stratified_patient_split(train_labels, cfg.val_fraction, rng)
    pid = manifest["patient_id"].astype(str)
    out = manifest.copy()
    out["split"] = np.where(pid.isin(test), "test", np.where(pid.isin(val), "val", "train"))
    return out


def check_disjoint(frame: pd.DataFrame) -> None:
    """Raises ``AssertionError`` if any patient appears in more than one split."""
    n = frame.groupby("patient_id")["split"].nunique()
    leaked = sorted(n[n > 1].index.astype(str))
    if leaked:
        raise AssertionError(f"patients in more than one split: {leaked[:10]}")


def split_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    """Patients and images per split, by kind and pathology."""
    out: dict[str, Any] = {}
    for split, part in frame.groupby("split"):
        entry: dict[str, Any] = {"patients": int(part["patient_id"].nunique())}
        for kind, sub in part.groupby("kind"):
            entry[str(kind)] = {
                str(k): int(v) for k, v in sub["pathology"].value_counts().sort_index().items()
            }
        out[str(split)] = entry
    total = frame["patient_id"].nunique()
    out["test_patient_fraction"] = round(
        frame.loc[frame["split"] == "test", "patient_id"].nunique() / max(total, 1), 4
    )
    if "official_split" in frame:
        sides = frame.groupby("patient_id")["official_split"].nunique()
        out["official_overlap_patients"] = int((sides > 1).sum())
    return out
