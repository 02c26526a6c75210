"""Reading the CBIS-DDSM case-description CSVs into one tidy table.

CBIS-DDSM (Lee et al. 2017, Scientific Data 4:170177), the data set of the paper's §3.1,
describes each abnormality in one CSV row: ``mass_case_description_{train,test}_set.csv``
and ``calc_case_description_{train,test}_set.csv``. This project adds
``normal_case_description_{train,test}_set.csv`` for lesion-free images (empty crop/mask
paths, pathology ``NORMAL``).

The files are joined to DICOM files only through the SeriesInstanceUID, the second UID of
each path (``<subject>/<StudyUID>/<SeriesUID>/00000N.dcm``): downloaded folders are named
differently from the CSV paths. Cells carry stray whitespace and newlines, and the calc
files spell ``breast density`` where the mass files say ``breast_density``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from mammocad.errors import InputError, InputNotFound
from mammocad.manifest import PATHOLOGY_CLASS

log = logging.getLogger(__name__)

CSV_GLOB = "*_case_description_*_set.csv"
_CSV_NAME = re.compile(r"^(mass|calc|normal)_case_description_(train|test)_set\.csv$")
_CATEGORY = {"mass": "mass", "calc": "calcification", "normal": "normal"}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_FILE_INDEX = re.compile(r"^0*(\d+)\.dcm$", re.IGNORECASE)

#: Columns every case-description file must have (after normalisation).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "breast_density",
    "left_or_right_breast",
    "image_view",
    "abnormality_id",
    "abnormality_type",
    "assessment",
    "pathology",
    "subtlety",
    "image_file_path",
    "cropped_image_file_path",
    "roi_mask_file_path",
)
#: Lesion descriptor columns per file kind: (shape column, margins column).
LESION_COLUMNS: dict[str, tuple[str, str] | None] = {
    "mass": ("mass_shape", "mass_margins"),
    "calc": ("calc_type", "calc_distribution"),
    "normal": None,
}

#: Columns of the returned table, in order.
OUTPUT_COLUMNS: tuple[str, ...] = (
    "dataset",
    "source_file",
    "source_row",
    "category",
    "official_split",
    "patient_id",
    "image_id",
    "roi_id",
    "laterality",
    "view",
    "abnormality_id",
    "abnormality_type",
    "pathology",
    "pathology_raw",
    "assessment",
    "subtlety",
    "breast_density",
    "lesion_shape",
    "lesion_margins",
    "image_file_path",
    "cropped_image_file_path",
    "roi_mask_file_path",
    "full_study_uid",
    "full_series_uid",
    "crop_series_uid",
    "mask_series_uid",
    "roi_series_uid",
    "crop_file_index",
    "mask_file_index",
)


def normalise_column(name: str) -> str:
    """Normalises a header: ``'ROI mask file path'`` → ``'roi_mask_file_path'``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _parse_path(path: str) -> tuple[str, str, str, int | None] | None:
    """``subject/StudyUID/SeriesUID/00000N.dcm`` → (subject, study, series, N)."""
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    if len(parts) < 3:
        return None
    subject, study, series = parts[0], parts[1], parts[2]
    if not (_UID.match(study) and _UID.match(series)):
        return None
    index = None
    if len(parts) > 3:
        m = _FILE_INDEX.match(parts[-1])
        index = int(m.group(1)) if m else None
    return subject, study, series, index


def _read_one(path: Path) -> pd.DataFrame:
    m = _CSV_NAME.match(path.name)
    if m is None:
        raise InputError(
            f"{path}: unexpected case-description file name; expected "
            "<mass|calc|normal>_case_description_<train|test>_set.csv"
        )
    kind, split = m.groups()
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    raw.columns = [normalise_column(c) for c in raw.columns]
    required = list(REQUIRED_COLUMNS) + list(LESION_COLUMNS[kind] or ())
    for column in required:
        if column not in raw.columns:
            raise InputError(f"{path.name}: missing required column {column!r}")
    if raw.empty:  # a header-only file (e.g. a subset with no test calcifications)
        return pd.DataFrame({c: pd.Series(dtype=object) for c in OUTPUT_COLUMNS})
    # Cells carry stray spaces and embedded newlines (the real files end paths with "\n").
    frame = raw.apply(lambda col: col.astype(str).str.strip())

    out = pd.DataFrame(index=frame.index)
    out["source_file"] = path.name
    out["source_row"] = frame.index + 2  # 1-based, after the header line
    out["category"] = _CATEGORY[kind]
    out["official_split"] = split
    # optional: sources other than CBIS-DDSM name their dataset (e.g. ``mias``)
    out["dataset"] = frame["dataset"] if "dataset" in frame.columns else ""
    out["patient_id"] = frame["patient_id"]
    out["laterality"] = frame["left_or_right_breast"].str.upper()
    out["view"] = frame["image_view"].str.upper()
    out["abnormality_id"] = frame["abnormality_id"]
    out["abnormality_type"] = frame["abnormality_type"].str.lower()
    out["pathology_raw"] = frame["pathology"].str.upper()
    unknown = sorted(set(out["pathology_raw"]) - set(PATHOLOGY_CLASS))
    if unknown:
        raise InputError(f"{path.name}: unknown pathology values {unknown}")
    out["pathology"] = out["pathology_raw"].map(PATHOLOGY_CLASS)
    for column in ("assessment", "subtlety", "breast_density"):
        out[column] = frame[column]
    lesion = LESION_COLUMNS[kind]
    out["lesion_shape"] = frame[lesion[0]] if lesion else ""
    out["lesion_margins"] = frame[lesion[1]] if lesion else ""
    for column in ("image_file_path", "cropped_image_file_path", "roi_mask_file_path"):
        out[column] = frame[column]

    image_parts = []
    for row, value in zip(out["source_row"], out["image_file_path"], strict=True):
        parsed = _parse_path(value)
        if parsed is None:
            raise InputError(f"{path.name} row {row}: cannot parse image file path {value!r}")
        image_parts.append(parsed)
    out["image_id"] = [p[0] for p in image_parts]
    out["full_study_uid"] = [p[1] for p in image_parts]
    out["full_series_uid"] = [p[2] for p in image_parts]

    for prefix, column in (("crop", "cropped_image_file_path"), ("mask", "roi_mask_file_path")):
        parsed_roi = [_parse_path(v) if v else None for v in out[column]]
        for row, value, parsed in zip(out["source_row"], out[column], parsed_roi, strict=True):
            if value and parsed is None:
                raise InputError(f"{path.name} row {row}: cannot parse {column} {value!r}")
        out[f"{prefix}_series_uid"] = [p[2] if p else "" for p in parsed_roi]
        out[f"{prefix}_file_index"] = pd.array(
            [p[3] if p else None for p in parsed_roi], dtype="Int64"
        )
    out["roi_series_uid"] = out["mask_series_uid"].where(
        out["mask_series_uid"] != "", out["crop_series_uid"]
    )
    has_roi = (out["crop_series_uid"] != "") | (out["mask_series_uid"] != "")
    out["roi_id"] = (out["image_id"] + "_" + out["abnormality_id"]).where(has_roi, "")

    mismatch = out["abnormality_type"] != out["category"]
    if mismatch.any():
        log.warning(
            "%s: %d rows whose abnormality type differs from the file's (%s)",
            path.name,
            int(mismatch.sum()),
            out["category"].iloc[0],
        )
    return out[list(OUTPUT_COLUMNS)]


def read_case_descriptions(csv_dir: str | Path) -> pd.DataFrame:
    """Reads every ``*_case_description_*_set.csv`` in ``csv_dir`` into one table.

    Column names are normalised (lower case, spaces → underscores), every cell is
    stripped, and these columns are derived: ``category`` (mass/calcification/normal, from
    the file name), ``official_split`` (train/test, from the file name), ``image_id`` (the
    image path's subject folder, e.g. ``Mass-Training_P_00001_LEFT_CC``),
    ``full_study_uid``/``full_series_uid``, ``crop_series_uid``/``mask_series_uid`` and
    ``roi_series_uid`` (the mask's, else the crop's), ``crop_file_index``/
    ``mask_file_index`` (the ``N`` of ``00000N.dcm``), ``roi_id``
    (``<image_id>_<abnormality id>``, empty for rows without ROI paths), ``laterality``,
    ``view``, ``pathology`` (BENIGN_WITHOUT_CALLBACK → BENIGN; the original in
    ``pathology_raw``) and ``lesion_shape``/``lesion_margins`` (mass shape/margins or calc
    type/distribution). All values are strings except ``source_row`` and the file indices.

    Args:
        csv_dir: folder holding the case-description CSVs.

    Returns:
        One row per CSV row, columns :data:`OUTPUT_COLUMNS`, files in name order.

    Raises:
        FileNotFoundError: if ``csv_dir`` holds no case-description CSV.
        ValueError: for a missing required column, an unknown pathology or an unparseable
            image path, naming the file (and row).
    """
    csv_dir = Path(csv_dir)
    files = sorted(csv_dir.glob(CSV_GLOB))
    if not files:
        raise InputNotFound(f"no {CSV_GLOB} files in {csv_dir}")
    frames = [_read_one(path) for path in files]
    table = pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)
    for path, frame in zip(files, frames, strict=True):
        log.info("read %d case-description rows from %s", len(frame), path.name)
    return table
