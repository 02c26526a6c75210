"""The ``convert`` step: CBIS-DDSM-format DICOM trees → 16-bit PNGs and one manifest.

Input (a ``data/raw`` folder): ``csv/*_case_description_*_set.csv`` and DICOM files
anywhere below, joined only by SeriesInstanceUID (see :mod:`mammocad.cbis`). Output
(written atomically)::

    <out>/full/<image_id>.png        16-bit full mammogram
    <out>/roi/<roi_id>_crop.png      16-bit cropped ROI
    <out>/roi/<roi_id>_mask.png      8-bit binary mask (0/255), full-image size
    <out>/manifest.csv               one row per full image and per ROI (MANIFEST_COLUMNS)
    <out>/skipped.csv                file, image_id, reason

Each full image and its ROIs are one task in a worker process: the task decodes its DICOM
files, writes the PNGs and returns small row dicts, so pixel arrays never accumulate in the
parent (a CBIS-DDSM full image is about 25 MB as ``uint16``).

Crop and mask are told apart by content, never by the CSV column or file order, because
both share one "ROI mask images" series and the CSV columns are swapped on some rows: a
mask is binary (at most two distinct values) and has the full image's size; the crop is
the other image. A row counts as *swapped* when the file found to be the mask sits where
the CSV's crop column points: in the crop column's series when the two columns name
different series, else at the crop column's ``00000N.dcm`` position, ``N`` counted from 0
over the series' files ordered by InstanceNumber.

Skipped-fraction definition: CSV items are the distinct full images plus the ROI rows;
the fraction is skipped CSV items ÷ all CSV items. DICOM files that no CSV row references
(stray files) and files that cannot be read while indexing are listed in ``skipped.csv``
but do not count, since no CSV item is lost through them (a lost item shows up as its own
"series … not found under raw" row).

Every source's full images pass through here, so the one minimum-image rule
(:mod:`mammocad.image_rules`: too small or blank) is applied here for all of them; a
refused full image is a skip row with the reason, and its ROIs are skipped with it.

Only image sizes, bit depths and CSV fields reach the outputs; no DICOM patient field is
written (see :data:`mammocad.dicom.SAFE_FIELDS`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mammocad import cbis
from mammocad import dicom as dicom_module
from mammocad.boxes import bounding_box
from mammocad.dicom import SkipImage, read_header, read_pixels
from mammocad.errors import ExpectedError
from mammocad.image_rules import image_problem
from mammocad.io import atomic_dir, write_csv, write_png
from mammocad.manifest import MANIFEST_COLUMNS, SKIPPED_COLUMNS, worst, write_manifest
from mammocad.parallel import imap

log = logging.getLogger(__name__)

DATASET = "cbis-ddsm"

UNREFERENCED = "not referenced by any case-description row"
#: A source's list of series the case descriptions name but it could not provide.
MISSING_SERIES = "missing_series.csv"

#: Reason prefix → category, for the metrics; first match wins.
REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    (r"^not a DICOM (file|image)|^unreadable DICOM header", "not_dicom"),
    (r"^no pixel data", "no_pixel_data"),
    (r"^undecodable pixel data", "undecodable_pixels"),
    (r"^not greyscale", "not_greyscale"),
    (r"^multi-frame volume", "multi_frame"),
    (r"^not a mammogram", "not_mammogram"),
    (r"^image too small|^blank image", "not_full_mammogram"),
    (r"^series \S+ not found under raw", "series_not_found"),
    (r"^full image \S+ skipped", "full_image_skipped"),
    (r"^mask size", "mask_size_mismatch"),
    (r"^(no mask|no cropped image|empty mask|ambiguous ROI series|no ROI path)", "roi_incomplete"),
    (r"^full-image series", "ambiguous_full_series"),
    (r"^duplicate SOPInstanceUID", "duplicate_file"),
    (r"^" + re.escape(UNREFERENCED), "unreferenced"),
)
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".dic"}


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


class DicomIndex(NamedTuple):
    """DICOM files found under a folder.

    Attributes:
        series: SeriesInstanceUID → files, ordered by InstanceNumber then path.
        skipped: ``{"file", "image_id", "reason"}`` rows for unreadable or duplicate files.
    """

    series: dict[str, list[Path]]
    skipped: list[dict[str, str]]


def reason_category(reason: str) -> str:
    """Maps a skip reason to a short category name (``"other"`` if none matches)."""
    for pattern, category in REASON_CATEGORIES:
        if re.search(pattern, reason):
            return category
    return "other"


# --- indexing --------------------------------------------------------------------------------


def _candidate_files(raw_dir: Path) -> list[Path]:
    """Files that may be DICOM: ``.dcm``-like or extension-less, outside ``csv/``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(raw_dir):
        here = Path(root)
        # The case-description folder and hidden folders (temporary outputs) hold no images.
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (here == raw_dir and d == "csv")
        )
        for name in sorted(files):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in _DICOM_SUFFIXES:
                continue
            found.append(path)
    return found


def _index_one(path: Path) -> tuple[Path, str, str, int, str]:
    """``(path, series_uid, sop_uid, instance_number, reason)``; reason empty when read."""
    try:
        header = read_header(path)
    except SkipImage as skip:
        return path, "", "", 0, skip.reason
    instance = header.instance_number if header.instance_number is not None else 0
    return path, header.series_uid, header.sop_uid, instance, ""


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def index_dicoms(raw_dir: str | os.PathLike, workers: int = 0) -> DicomIndex:
    """Reads the headers (not the pixels) of every DICOM-like file under ``raw_dir``.

    Args:
        raw_dir: the raw-data folder; its ``csv/`` subfolder and hidden entries are ignored,
            as are files whose extension is not ``.dcm``/``.dicom``/``.dic`` or empty.
        workers: processes for :func:`mammocad.parallel.imap` (0 = all cores).

    Returns:
        The :class:`DicomIndex`: files grouped by SeriesInstanceUID, plus skip rows for files
        that are not readable DICOM and for second copies of one SOPInstanceUID.
    """
    raw_dir = Path(raw_dir)
    paths = _candidate_files(raw_dir)
    entries: dict[str, list[tuple[int, str, Path]]] = {}
    skipped: list[dict[str, str]] = []
    seen_sop: dict[str, Path] = {}
    results = imap(_index_one, paths, workers=workers, desc="index DICOM headers", unit="file")
    for path, series_uid, sop_uid, instance, reason in results:
        if reason:
            skipped.append({"file": _rel(path, raw_dir), "image_id": "", "reason": reason})
            continue
        if sop_uid and sop_uid in seen_sop:
            first = _rel(seen_sop[sop_uid], raw_dir)
            skipped.append(
                {
                    "file": _rel(path, raw_dir),
                    "image_id": "",
                    "reason": f"duplicate SOPInstanceUID of {first}",
                }
            )
            continue
        if sop_uid:
            seen_sop[sop_uid] = path
        entries.setdefault(series_uid, []).append((instance, path.as_posix(), path))
    series = {uid: [p for _, _, p in sorted(items)] for uid, items in entries.items()}
    log.info(
        "indexed %d DICOM files in %d series under %s (%d unreadable or duplicate)",
        sum(len(v) for v in series.values()),
        len(series),
        raw_dir,
        len(skipped),
    )
    return DicomIndex(series=series, skipped=skipped)


# --- per-image work (runs in worker processes) -------------------------------------------------


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


def _is_binary(pixels: np.ndarray) -> bool:
    """At most two distinct values (min/max comparison avoids sorting 12 M pixels)."""
    lo, hi = pixels.min(), pixels.max()
    return bool(np.all((pixels == lo) | (pixels == hi)))


def _convert_roi(
    roi: _RoiTask, full_shape: tuple[int, int], task: _ImageTask
) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """Decodes, classifies and writes one ROI; returns ``(row, None)`` or ``(None, skip)``."""
    if roi.missing_reason:
        return None, {
            "file": roi.missing_file,
            "image_id": roi.roi_id,
            "reason": roi.missing_reason,
        }
    files = list(dict.fromkeys(roi.crop_files + roi.mask_files))

    def skip(reason: str, path: Path | None = None) -> tuple[None, dict[str, str]]:
        shown = path if path is not None else (files[0] if files else None)
        name = _rel(shown, task.raw_dir) if shown is not None else ""
        return None, {"file": name, "image_id": roi.roi_id, "reason": reason}

    crops: list[tuple[Path, Any]] = []
    masks: list[tuple[Path, Any]] = []
    wrong_size: list[tuple[Path, tuple[int, int]]] = []
    for path in files:
        try:
            image = read_pixels(path)
        except SkipImage as exc:
            return skip(exc.reason, path)
        if not _is_binary(image.pixels):
            crops.append((path, image))
        elif image.pixels.shape == full_shape:
            masks.append((path, image))
        else:
            wrong_size.append((path, image.pixels.shape))
        del image
    if not masks:
        if wrong_size:
            path, shape = wrong_size[0]
            return skip(
                f"mask size {shape[0]}x{shape[1]} does not match full image "
                f"{full_shape[0]}x{full_shape[1]}",
                path,
            )
        return skip(f"no mask in ROI series {roi.roi_series_uid}: no binary full-size image")
    if len(masks) > 1:
        return skip(
            f"ambiguous ROI series {roi.roi_series_uid}: {len(masks)} binary full-size images"
        )
    if not crops:
        return skip(f"no cropped image in ROI series {roi.roi_series_uid}")
    if len(crops) > 1:
        return skip(f"ambiguous ROI series {roi.roi_series_uid}: {len(crops)} crop candidates")

    mask_path, mask_image = masks[0]
    crop_image = crops[0][1]
    pixels = mask_image.pixels
    top = pixels.max()
    if top == pixels.min():
        return skip("empty mask: no lesion pixels", mask_path)
    mask = np.where(pixels == top, np.uint8(255), np.uint8(0))
    x0, y0, x1, y1 = bounding_box(mask)

    if roi.same_series:
        position = files.index(mask_path)
        swapped = roi.crop_file_index is not None and position == roi.crop_file_index
    else:
        swapped = mask_path in roi.crop_files and mask_path not in roi.mask_files

    crop_rel = f"roi/{roi.roi_id}_crop.png"
    mask_rel = f"roi/{roi.roi_id}_mask.png"
    write_png(task.out_dir / crop_rel, crop_image.pixels)
    write_png(task.out_dir / mask_rel, mask)
    height, width = crop_image.pixels.shape
    row = {
        "roi_id": roi.roi_id,
        "image_path": crop_rel,
        "mask_path": mask_rel,
        "height": int(height),
        "width": int(width),
        "bbox_x0": x0,
        "bbox_y0": y0,
        "bbox_x1": x1,
        "bbox_y1": y1,
        "bits_stored": int(crop_image.bits_stored),
        "swapped": bool(swapped),
    }
    return row, None


def _convert_image(task: _ImageTask) -> dict[str, Any]:
    """Converts one full image and its ROIs; returns only small row dicts.

    Returns:
        ``{"full": row | None, "rois": [rows], "skipped": [rows], "patient_id_mismatch":
        bool}``.
    """
    result: dict[str, Any] = {
        "full": None,
        "rois": [],
        "skipped": [],
        "patient_id_mismatch": False,
    }
    full_file = task.full_files[0]
    reason = ""
    if len(task.full_files) > 1:
        reason = (
            f"full-image series {task.full_series_uid} holds {len(task.full_files)} images, "
            "expected 1"
        )
    else:
        try:
            image = read_pixels(full_file)
        except SkipImage as exc:
            reason = exc.reason
        else:
            reason = image_problem(image.pixels)
    if reason:
        full_name = _rel(full_file, task.raw_dir)
        result["skipped"].append({"file": full_name, "image_id": task.image_id, "reason": reason})
        for roi in task.rois:
            result["skipped"].append(
                {
                    "file": full_name,
                    "image_id": roi.roi_id,
                    "reason": f"full image {task.image_id} skipped: {reason}",
                }
            )
        return result

    # PatientID only checks the join; it is not written anywhere.
    if image.header.patient_id and image.header.patient_id != task.image_id:
        result["patient_id_mismatch"] = True
    full_rel = f"full/{task.image_id}.png"
    write_png(task.out_dir / full_rel, image.pixels)
    height, width = image.pixels.shape
    result["full"] = {
        "image_path": full_rel,
        "height": int(height),
        "width": int(width),
        "bits_stored": int(image.bits_stored),
    }
    del image  # free the full image before decoding the ROI files
    for roi in task.rois:
        row, skipped = _convert_roi(roi, (height, width), task)
        if row is not None:
            result["rois"].append(row)
        if skipped is not None:
            result["skipped"].append(skipped)
    return result


# --- the dataset-level driver -----------------------------------------------------------------


def _max_numeric(values: Iterable[str]) -> str:
    numbers = [v for v in values if str(v).strip().lstrip("-").isdigit()]
    return max(numbers, key=int) if numbers else ""


def _roi_id(row: pd.Series) -> str:
    return row["roi_id"] or f"{row['image_id']}_{row['abnormality_id']}"


def _full_row(image_id: str, rows: pd.DataFrame, written: dict[str, Any]) -> dict[str, Any]:
    first = rows.iloc[0]
    pathology = worst(rows["pathology"])
    pathology_raw = rows.loc[rows["pathology"] == pathology, "pathology_raw"].iloc[0]
    categories = list(dict.fromkeys(rows["category"]))
    if len(categories) > 1:
        log.warning("%s: case-description rows of several types %s", image_id, categories)
    return {
        "image_id": image_id,
        "kind": "full",
        "patient_id": first["patient_id"],
        "dataset": first["dataset"] or DATASET,
        "official_split": first["official_split"],
        "laterality": first["laterality"],
        "view": first["view"],
        "abnormality_type": categories[0],
        "abnormality_id": "",
        "pathology": pathology,
        "pathology_raw": pathology_raw,
        "assessment": _max_numeric(rows["assessment"]),
        "subtlety": "",
        "breast_density": first["breast_density"],
        "lesion_shape": "",
        "lesion_margins": "",
        "full_image_id": image_id,
        "image_path": written["image_path"],
        "mask_path": "",
        "height": written["height"],
        "width": written["width"],
        "bits_stored": written["bits_stored"],
    }


def _roi_row(row: pd.Series, written: dict[str, Any]) -> dict[str, Any]:
    out = {
        "image_id": written["roi_id"],
        "kind": "roi",
        "patient_id": row["patient_id"],
        "dataset": row["dataset"] or DATASET,
        "official_split": row["official_split"],
        "laterality": row["laterality"],
        "view": row["view"],
        "abnormality_type": row["category"],
        "abnormality_id": row["abnormality_id"],
        "pathology": row["pathology"],
        "pathology_raw": row["pathology_raw"],
        "assessment": row["assessment"],
        "subtlety": row["subtlety"],
        "breast_density": row["breast_density"],
        "lesion_shape": row["lesion_shape"],
        "lesion_margins": row["lesion_margins"],
        "full_image_id": row["image_id"],
    }
    for key in ("image_path", "mask_path", "height", "width", "bits_stored"):
        out[key] = written[key]
    for key in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"):
        out[key] = written[key]
    return out


def _frame(rows: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in ("height", "width", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "bits_stored"):
        if column in frame.columns:
            frame[column] = frame[column].astype("Int64")
    return frame


def missing_reasons(raw_dir: Path) -> dict[str, str]:
    """Why a source lacks series the case descriptions name: ``missing_series.csv`` of the
    raw folder (or of each combined source's subfolder), SeriesInstanceUID → reason."""
    reasons: dict[str, str] = {}
    for path in sorted([*raw_dir.glob(MISSING_SERIES), *raw_dir.glob(f"*/{MISSING_SERIES}")]):
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            reasons.update(zip(frame["series_uid"], frame["reason"], strict=True))
        except (OSError, ValueError, KeyError) as err:
            log.warning(
                "%s is unreadable (%s); missing series are reported without reasons", path, err
            )
    return reasons


def _not_found(uid: str, reasons: dict[str, str]) -> str:
    reason = f"series {uid} not found under raw"
    return f"{reason} ({reasons[uid]})" if reasons.get(uid) else reason


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
    for image_id, rows in table.groupby("image_id", sort=False):
        n_full += 1
        series_uids = list(dict.fromkeys(rows["full_series_uid"]))
        if len(series_uids) > 1:
            log.warning("%s: rows name %d full-image series", image_id, len(series_uids))
        full_uid = series_uids[0]
        roi_rows = rows[rows["category"] != "normal"].drop_duplicates(
            subset=["abnormality_id"], keep="first"
        )
        no_roi = (roi_rows["crop_series_uid"] == "") & (roi_rows["mask_series_uid"] == "")
        n_image_level += int(no_roi.sum())
        roi_rows = roi_rows[~no_roi]
        n_roi += len(roi_rows)
        full_files = index.series.get(full_uid)
        if not full_files:
            reason = _not_found(full_uid, reasons or {})
            skipped.append(
                {
                    "file": rows["image_file_path"].iloc[0],
                    "image_id": image_id,
                    "reason": reason,
                }
            )
            for _, row in roi_rows.iterrows():
                skipped.append(
                    {
                        "file": rows["image_file_path"].iloc[0],
                        "image_id": _roi_id(row),
                        "reason": f"full image {image_id} skipped: {reason}",
                    }
                )
            continue
        rois: list[_RoiTask] = []
        for _, row in roi_rows.iterrows():
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


def _counts(frame: pd.DataFrame, kind: str, column: str) -> dict[str, int]:
    values = frame.loc[frame["kind"] == kind, column]
    return {str(k): int(v) for k, v in sorted(Counter(values).items())}


JOURNAL = "journal.jsonl"
_FINGERPRINT = "fingerprint"


def _fingerprint(table: pd.DataFrame, index: DicomIndex) -> str:
    """What a partial conversion was made from: the case descriptions, the DICOM files
    (paths, sizes, modification times) and the converter's own code. A resumed run reuses
    earlier work only when all of them are unchanged."""
    h = hashlib.sha256()
    h.update(table.to_csv(index=False).encode())
    for uid in sorted(index.series):
        for path in index.series[uid]:
            st = path.stat()
            h.update(f"{uid}|{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    for module in (__file__, cbis.__file__, dicom_module.__file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def _open_partial(out_dir: Path, fingerprint: str) -> Path:
    """The work folder beside ``out_dir`` that survives an interrupted run.

    Images are written there as they are converted and listed in a journal; a rerun with
    the same fingerprint skips them, any other rerun starts afresh.
    """
    partial = out_dir.parent / f".{out_dir.name}.partial"
    stamp = partial / _FINGERPRINT
    if not (stamp.is_file() and stamp.read_text() == fingerprint):
        shutil.rmtree(partial, ignore_errors=True)
        for sub in ("full", "roi"):
            (partial / sub).mkdir(parents=True)
        stamp.write_text(fingerprint)
        (partial / JOURNAL).touch()
    return partial


def _read_journal(partial: Path) -> dict[str, dict[str, Any]]:
    """Results of the images an earlier run finished; a torn last line is ignored."""
    done = {}
    with open(partial / JOURNAL) as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # the run stopped while writing this line
            done[entry["image_id"]] = entry["result"]
    return done


def default_dataset(raw_dir: Path) -> str:
    """The dataset name of rows that do not give one: the single source in
    ``source.json`` (e.g. ``synthetic``), else ``cbis-ddsm``, whose layout this is."""
    try:
        source = json.loads((Path(raw_dir) / "source.json").read_text())["source"]
    except (FileNotFoundError, KeyError, ValueError):
        return DATASET
    if isinstance(source, list):
        return source[0] if len(source) == 1 else DATASET
    return str(source) if source else DATASET


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
            rows_by_image = {k: g for k, g in table.groupby("image_id", sort=False)}
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
                by_roi: dict[str, pd.Series] = {}
                for _, r in rows.iterrows():
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


def _summary(skips: list[dict[str, str]], n_items: int) -> str:
    """The most frequent skip categories with one example reason each."""
    if not skips:
        return f"0 of {n_items} items skipped"
    by_category: dict[str, list[str]] = {}
    for skip in skips:
        by_category.setdefault(reason_category(skip["reason"]), []).append(skip["reason"])
    ranked = sorted(by_category.items(), key=lambda kv: -len(kv[1]))[:5]
    return "; ".join(f"{cat} ×{len(reasons)} (e.g. {reasons[0]!r})" for cat, reasons in ranked)
