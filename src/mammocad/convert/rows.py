"""Manifest rows of ``convert``: a full image's and an ROI's row built from their
case-description rows and what the worker wrote, the typed frame, and per-kind counts.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.manifest import worst

log = logging.getLogger(__name__)

DATASET = "cbis-ddsm"


def _max_numeric(values: Iterable[str]) -> str:
    numbers = [v for v in values if str(v).strip().lstrip("-").isdigit()]
    return max(numbers, key=int) if numbers else ""


def _roi_id(row: Mapping[str, Any]) -> str:
    return row["roi_id"] or f"{row['image_id']}_{row['abnormality_id']}"


def _full_row(
    image_id: str, rows: list[dict[str, Any]], written: dict[str, Any]
) -> dict[str, Any]:
    """The manifest row of a full image from its case-description rows (as records)."""
    first = rows[0]
    pathology = worst(row["pathology"] for row in rows)
    pathology_raw = next(r["pathology_raw"] for r in rows if r["pathology"] == pathology)
    categories = list(dict.fromkeys(row["category"] for row in rows))
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
        "assessment": _max_numeric(row["assessment"] for row in rows),
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


def _roi_row(row: Mapping[str, Any], written: dict[str, Any]) -> dict[str, Any]:
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


def _counts(frame: pd.DataFrame, kind: str, column: str) -> dict[str, int]:
    values = frame.loc[frame["kind"] == kind, column]
    return {str(k): int(v) for k, v in sorted(Counter(values).items())}


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
