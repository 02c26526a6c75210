"""The plan of ``convert``: case-description rows grouped per full image into tasks for
worker processes, with the files of each series, and the items already known to be lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.convert.index import DicomIndex
from mammocad.convert.rows import _roi_id
from mammocad.convert.skips import _not_found

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _RoiTask:
    roi_id: str
    roi_series_uid: str
    crop_files: tuple[Path, ...]
    mask_files: tuple[Path, ...]
    same_series: bool
    crop_file_index: int | None
    mask_file_index: int | None
    #: Set when the plan already knows the ROI cannot be made (its series is missing); the
    #: reason is reported only if the full image succeeds, else the full image's reason is.
    missing_reason: str = ""
    missing_file: str = ""


@dataclass(frozen=True)
class _ImageTask:
    image_id: str
    full_series_uid: str
    full_files: tuple[Path, ...]
    rois: tuple[_RoiTask, ...]
    out_dir: Path
    raw_dir: Path


def _plan(
    table: pd.DataFrame,
    index: DicomIndex,
    raw_dir: Path,
    out_dir: Path,
    reasons: dict[str, str] | None = None,
) -> tuple[list[_ImageTask], list[dict[str, str]], int, int, int]:
    """Groups CSV rows per full image.

    ``reasons`` (SeriesInstanceUID → why the source lacks it) completes the reason of
    series not found.

    Returns:
        Tasks, up-front skips, full-image items, ROI items, and findings without any ROI
        path: those are image-level labels (the full image carries their pathology), not
        ROI items, so they neither count as skipped nor fail the run.
    """
    tasks: list[_ImageTask] = []
    skipped: list[dict[str, str]] = []
    n_full = n_roi = n_image_level = 0
    # plain records grouped in first-appearance order: per-group DataFrame operations cost
    # seconds on a few hundred images
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_dict("records"):
        groups.setdefault(row["image_id"], []).append(row)
    for image_id, rows in groups.items():
        n_full += 1
        series_uids = list(dict.fromkeys(row["full_series_uid"] for row in rows))
        if len(series_uids) > 1:
            log.warning("%s: rows name %d full-image series", image_id, len(series_uids))
        full_uid = series_uids[0]
        findings: dict[str, dict[str, Any]] = {}  # one row per abnormality, the first
        for row in rows:
            if row["category"] != "normal":
                findings.setdefault(row["abnormality_id"], row)
        roi_rows = []
        for row in findings.values():
            if row["crop_series_uid"] == "" and row["mask_series_uid"] == "":
                n_image_level += 1
            else:
                roi_rows.append(row)
        n_roi += len(roi_rows)
        full_files = index.series.get(full_uid)
        if not full_files:
            reason = _not_found(full_uid, reasons or {})
            first_file = rows[0]["image_file_path"]
            skipped.append({"file": first_file, "image_id": image_id, "reason": reason})
            for row in roi_rows:
                skipped.append(
                    {
                        "file": first_file,
                        "image_id": _roi_id(row),
                        "reason": f"full image {image_id} skipped: {reason}",
                    }
                )
            continue
        rois: list[_RoiTask] = []
        for row in roi_rows:
            crop_uid, mask_uid = row["crop_series_uid"], row["mask_series_uid"]
            crop_index, mask_index = row["crop_file_index"], row["mask_file_index"]
            missing_reason = missing_file = ""
            for uid, path in (
                (mask_uid, row["roi_mask_file_path"]),
                (crop_uid, row["cropped_image_file_path"]),
            ):
                if uid and not index.series.get(uid):
                    missing_reason, missing_file = _not_found(uid, reasons or {}), path
                    break
            rois.append(
                _RoiTask(
                    roi_id=_roi_id(row),
                    roi_series_uid=row["roi_series_uid"],
                    crop_files=tuple(index.series.get(crop_uid, ())),
                    mask_files=tuple(index.series.get(mask_uid, ())),
                    same_series=crop_uid == mask_uid,
                    crop_file_index=None if pd.isna(crop_index) else int(crop_index),
                    mask_file_index=None if pd.isna(mask_index) else int(mask_index),
                    missing_reason=missing_reason,
                    missing_file=missing_file,
                )
            )
        tasks.append(
            _ImageTask(
                image_id=image_id,
                full_series_uid=full_uid,
                full_files=tuple(full_files),
                rois=tuple(rois),
                out_dir=out_dir,
                raw_dir=raw_dir,
            )
        )
    return tasks, skipped, n_full, n_roi, n_image_level
