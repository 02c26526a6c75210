"""The dataset-level driver of ``convert``: :func:`convert_dataset` indexes the raw folder,
plans, converts in worker processes with a resumable journal, and writes the manifest,
the skip list and the metrics atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad import cbis
from mammocad.convert.image import _convert_image
from mammocad.convert.index import _rel, index_dicoms
from mammocad.convert.journal import JOURNAL, _fingerprint, _open_partial, _read_journal
from mammocad.convert.plan import _plan
from mammocad.convert.rows import _counts, _frame, _full_row, _roi_id, _roi_row, default_dataset
from mammocad.convert.skips import UNREFERENCED, _summary, missing_reasons, reason_category
from mammocad.errors import ExpectedError
from mammocad.io import atomic_dir, write_csv
from mammocad.manifest import MANIFEST_COLUMNS, SKIPPED_COLUMNS, write_manifest
from mammocad.parallel import imap

log = logging.getLogger(__name__)


class ConvertError(ExpectedError, RuntimeError):
    """The conversion produced nothing usable or skipped more than allowed."""


@dataclass
class ConvertResult:
    """What :func:`convert_dataset` wrote.

    Attributes:
        manifest: the rows of ``manifest.csv``.
        skipped: the rows of ``skipped.csv``.
        metrics: counts for ``metrics/`` (see :func:`convert_dataset`).
    """

    manifest: pd.DataFrame
    skipped: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def convert_dataset(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    workers: int = 0,
    max_skipped_fraction: float = 0.2,
) -> ConvertResult:
    """Converts a CBIS-DDSM-format raw folder into PNGs and a manifest (paper §3.1 data).

    Args:
        raw_dir: folder with ``csv/`` case descriptions and DICOM files below it.
        out_dir: output folder; replaced atomically, left untouched on failure.
        workers: processes (0 = all cores, 1 = in this process).
        max_skipped_fraction: largest allowed skipped CSV items ÷ all CSV items.

    Returns:
        A :class:`ConvertResult`. ``metrics`` keys: ``csv_rows``, ``csv_items``,
        ``full_images_expected``, ``rois_expected``, ``full_images_written``,
        ``rois_written``, ``full_images_by_pathology``, ``full_images_by_type``,
        ``rois_by_pathology``, ``rois_by_type``, ``skipped_items``, ``skipped_fraction``,
        ``max_skipped_fraction``, ``skipped_by_reason`` (CSV items per reason category),
        ``stray_files``, ``stray_files_by_reason``, ``swapped_crop_mask_rows``,
        ``patient_id_mismatches``, ``dicom_files_indexed``.

    Raises:
        FileNotFoundError: if ``raw_dir/csv`` holds no case-description CSV.
        ValueError: for malformed case-description CSVs.
        ConvertError: if no full image could be written or the skipped fraction exceeds
            ``max_skipped_fraction``; ``out_dir`` is then not created or changed.
    """
    raw_dir = Path(raw_dir)
    out_dir = Path(out_dir)
    table = cbis.read_case_descriptions(raw_dir / "csv")
    table["dataset"] = table["dataset"].where(table["dataset"] != "", default_dataset(raw_dir))
    index = index_dicoms(raw_dir, workers=workers)

    referenced = set(table["full_series_uid"]) | set(table["crop_series_uid"])
    referenced |= set(table["mask_series_uid"])
    stray = list(index.skipped)
    for uid, files in index.series.items():
        if uid not in referenced:
            stray.extend(
                {"file": _rel(p, raw_dir), "image_id": "", "reason": UNREFERENCED} for p in files
            )

    partial = _open_partial(out_dir, _fingerprint(table, index))
    done = _read_journal(partial)
    tasks, item_skips, n_full, n_roi, n_image_level = _plan(
        table, index, raw_dir, partial, missing_reasons(raw_dir)
    )
    if n_image_level:
        log.info(
            "%d findings have no ROI (no mask or box): kept as image-level labels of their "
            "full images, which train the shallow CNN; give a mask or a box to train the "
            "patch networks on them",
            n_image_level,
        )
    todo = [t for t in tasks if t.image_id not in done]
    if done:
        log.info("resuming: %d of %d images already converted", len(tasks) - len(todo), len(tasks))
    with open(partial / JOURNAL, "a") as journal:
        for task, result in zip(
            todo,
            imap(
                _convert_image, todo, workers=workers, desc="convert", total=len(todo), unit="img"
            ),
            strict=True,
        ):
            done[task.image_id] = result
            journal.write(json.dumps({"image_id": task.image_id, "result": result}) + "\n")
            journal.flush()

    try:
        with atomic_dir(out_dir) as tmp:
            rows_by_image: dict[str, list[dict[str, Any]]] = {}
            for record in table.to_dict("records"):
                rows_by_image.setdefault(record["image_id"], []).append(record)
            manifest_rows: list[dict[str, Any]] = []
            swapped = mismatched_ids = 0
            for task in tasks:
                result = done[task.image_id]
                item_skips.extend(result["skipped"])
                mismatched_ids += int(result["patient_id_mismatch"])
                if result["full"] is None:
                    continue
                rows = rows_by_image[task.image_id]
                manifest_rows.append(_full_row(task.image_id, rows, result["full"]))
                by_roi: dict[str, dict[str, Any]] = {}
                for r in rows:
                    by_roi.setdefault(_roi_id(r), r)  # the first of duplicated rows, as planned
                for written in result["rois"]:
                    swapped += int(written["swapped"])
                    manifest_rows.append(_roi_row(by_roi[written["roi_id"]], written))

            manifest = _frame(manifest_rows, MANIFEST_COLUMNS)
            skipped = _frame(item_skips + stray, SKIPPED_COLUMNS)
            n_items = n_full + n_roi
            fraction = len(item_skips) / n_items if n_items else 0.0
            metrics: dict[str, Any] = {
                "csv_rows": len(table),
                "csv_items": n_items,
                "full_images_expected": n_full,
                "rois_expected": n_roi,
                "full_images_written": int((manifest["kind"] == "full").sum()),
                "rois_written": int((manifest["kind"] == "roi").sum()),
                "full_images_by_pathology": _counts(manifest, "full", "pathology"),
                "full_images_by_type": _counts(manifest, "full", "abnormality_type"),
                "rois_by_pathology": _counts(manifest, "roi", "pathology"),
                "rois_by_type": _counts(manifest, "roi", "abnormality_type"),
                "findings_without_roi": n_image_level,
                "skipped_items": len(item_skips),
                "skipped_fraction": round(fraction, 6),
                "max_skipped_fraction": max_skipped_fraction,
                "skipped_by_reason": dict(
                    sorted(Counter(reason_category(s["reason"]) for s in item_skips).items())
                ),
                "stray_files": len(stray),
                "stray_files_by_reason": dict(
                    sorted(Counter(reason_category(s["reason"]) for s in stray).items())
                ),
                "swapped_crop_mask_rows": swapped,
                "patient_id_mismatches": mismatched_ids,
                "dicom_files_indexed": sum(len(v) for v in index.series.values()),
            }
            for skip in item_skips:
                log.debug("skipped %s (%s): %s", skip["image_id"], skip["file"], skip["reason"])
            if mismatched_ids:
                log.warning(
                    "%d full images whose PatientID differs from the CSV subject", mismatched_ids
                )
            log.info(
                "converted %d full images and %d ROIs; skipped %d of %d CSV items (%.1f%%), "
                "%d stray files, %d swapped crop/mask rows",
                metrics["full_images_written"],
                metrics["rois_written"],
                len(item_skips),
                n_items,
                100 * fraction,
                len(stray),
                swapped,
            )
            if metrics["full_images_written"] == 0:
                raise ConvertError(
                    f"no usable full image in {raw_dir}: {_summary(item_skips, n_items)}"
                )
            if fraction > max_skipped_fraction:
                raise ConvertError(
                    f"skipped {len(item_skips)} of {n_items} CSV items ({fraction:.1%}), more than "
                    f"max_skipped_fraction={max_skipped_fraction:g}: {_summary(item_skips, n_items)}"
                    "; fix those inputs, or raise convert.max_skipped_fraction to keep what "
                    "is usable"
                )
            for sub in ("full", "roi"):
                os.replace(partial / sub, tmp / sub)
            write_manifest(manifest, tmp / "manifest.csv", MANIFEST_COLUMNS)
            write_csv(tmp / "skipped.csv", skipped)
    except ConvertError:
        # a verdict on the data, not an interruption: nothing to resume
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    return ConvertResult(manifest=manifest, skipped=skipped, metrics=metrics)
