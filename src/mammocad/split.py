"""Patient-disjoint, label-stratified train/validation/test split (paper §3.1: 80/20).

Split before augmenting, and split by patient: CC and MLO views of one breast, or
augmented copies of one image, on both sides of a split inflate every metric.

:func:`draw_test_patients` is the one stratified draw of patients: the split stage uses it,
and so do the sources that write their own train/test case files (``mias``, ``ddsm``,
``local``), each with its rule and random stream.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from mammocad.manifest import PATHOLOGIES, SEVERITY

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

#: How many patients of each stratum :func:`draw_test_patients` takes.
DrawRule = Literal["nearest", "half_up", "systematic"]

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


def draw_test_patients(
    strata: Mapping[K, Any], fraction: float, rng: np.random.Generator, rule: DrawRule = "nearest"
) -> set[K]:
    """Draws ``fraction`` of the patients of every stratum (a seeded, stratified draw).

    The strata are taken in sorted order and each one's patients, sorted, are shuffled
    with ``rng``; then the rule picks:

    * ``nearest`` (the split stage): the first ``round(size × fraction)`` of each stratum
      (halves to even), at least one from a stratum of two or more when ``fraction > 0``;
    * ``half_up`` (mini-MIAS): the first ``floor(size × fraction + 0.5)`` of each stratum;
    * ``systematic`` (DDSM, local): the shuffled strata laid end to end, every
      ``1/fraction``-th patient from an offset drawn after the shuffles, so each stratum's
      share is within one patient of ``fraction`` and small strata are not left out.

    Args:
        strata: patient id → stratum (e.g. the worst pathology); ids and strata each of one
            sortable type.
        fraction: share of patients drawn.
        rng: the seeded generator; the draw does not depend on the mapping's order.
        rule: one of the rules above.

    Returns:
        The drawn patient ids.
    """
    if rule not in ("nearest", "half_up", "systematic"):
        raise ValueError(f"unknown draw rule {rule!r} (nearest, half_up or systematic)")
    shuffled: list[list[K]] = []
    for stratum in sorted(set(strata.values())):
        ids = sorted(p for p, s in strata.items() if s == stratum)
        shuffled.append([ids[i] for i in rng.permutation(len(ids))])
    if rule == "systematic":
        ordered = [p for ids in shuffled for p in ids]
        offset = rng.random()
        return {
            p
            for i, p in enumerate(ordered)
            if int((i + 1) * fraction + offset) > int(i * fraction + offset)
        }
    chosen: set[K] = set()
    for ids in shuffled:
        if rule == "half_up":
            n = math.floor(fraction * len(ids) + 0.5)
        else:
            n = int(round(len(ids) * fraction))
            if fraction > 0 and n == 0 and len(ids) > 1:
                n = 1
        chosen.update(ids[:n])
    return chosen


def _strata(labels: pd.Series) -> dict[str, Any]:
    """Patient id (as text) → stratum, from a series indexed by patient id."""
    return dict(zip(labels.index.astype(str), labels, strict=True))


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
        test = draw_test_patients(_strata(labels), cfg.test_fraction, rng)
    else:
        sides = manifest.groupby("patient_id")["official_split"].agg(set)
        both = sorted(p for p, s in sides.items() if len(s) > 1)
        if both:
            # CBIS-DDSM's official files put some patients on both sides (31 of 1,566):
            # they go wholly to test so that no test patient is ever trained on.
            log.warning("%d patients are in both official splits; kept in test only", len(both))
        test = {str(p) for p, s in sides.items() if "test" in s}
    train_labels = labels[~labels.index.astype(str).isin(test)]
    val = draw_test_patients(_strata(train_labels), cfg.val_fraction, rng)
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
