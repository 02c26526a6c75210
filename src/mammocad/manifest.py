"""The manifest: the contract between ``convert`` and every later stage.

This module holds, once, the manifest's columns, the vocabularies its cells take (kinds,
pathologies, abnormality types, views, lateralities), the severity order of pathologies
that every "worst finding of a patient or image" uses, and the reading and writing of a
``manifest.csv`` with its column checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mammocad.errors import InputError
from mammocad.io import write_csv

#: manifest.csv columns, in order (the contract with every later stage).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id",
    "kind",
    "patient_id",
    "dataset",
    "official_split",
    "laterality",
    "view",
    "abnormality_type",
    "abnormality_id",
    "pathology",
    "pathology_raw",
    "assessment",
    "subtlety",
    "breast_density",
    "lesion_shape",
    "lesion_margins",
    "full_image_id",
    "image_path",
    "mask_path",
    "height",
    "width",
    "bbox_x0",
    "bbox_y0",
    "bbox_x1",
    "bbox_y1",
    "bits_stored",
)
#: skipped.csv columns of ``convert``, in order.
SKIPPED_COLUMNS: tuple[str, ...] = ("file", "image_id", "reason")

#: ``kind``: a full mammogram or a region of interest cropped from one.
KINDS: tuple[str, ...] = ("full", "roi")
#: ``pathology``: the class every stage after ``convert`` sees.
PATHOLOGIES: tuple[str, ...] = ("NORMAL", "BENIGN", "MALIGNANT")
#: ``abnormality_type`` of a finding (full images without one are ``normal``).
ABNORMALITY_TYPES: tuple[str, ...] = ("mass", "calcification", "normal")
#: ``view``: craniocaudal or mediolateral oblique.
VIEWS: tuple[str, ...] = ("CC", "MLO")
#: ``laterality``: the breast.
LATERALITIES: tuple[str, ...] = ("LEFT", "RIGHT")

#: Severity of every pathology a source or the manifest may name: NORMAL < BENIGN (with
#: or without callback) < MALIGNANT. The one order behind each "worst finding".
SEVERITY: dict[str, int] = {
    "NORMAL": 0,
    "BENIGN_WITHOUT_CALLBACK": 1,
    "BENIGN": 1,
    "MALIGNANT": 2,
}
#: Raw pathology (CBIS-DDSM's, DDSM's) → the manifest's class in :data:`PATHOLOGIES`.
PATHOLOGY_CLASS: dict[str, str] = {
    "BENIGN": "BENIGN",
    "BENIGN_WITHOUT_CALLBACK": "BENIGN",
    "MALIGNANT": "MALIGNANT",
    "NORMAL": "NORMAL",
}


def worst(pathologies: Iterable[str]) -> str:
    """The most severe of some pathologies (the first of equally severe ones).

    Raises:
        KeyError: for a value not in :data:`SEVERITY`.
        ValueError: for no values.
    """
    return max(pathologies, key=SEVERITY.__getitem__)


def missing_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The names of ``columns`` that ``frame`` lacks, in the given order."""
    return [c for c in columns if c not in frame.columns]


def read_manifest(
    path: str | os.PathLike, columns: Iterable[str] = (), made_by: str = "convert"
) -> pd.DataFrame:
    """Reads a ``manifest.csv`` (empty cells stay empty strings).

    Args:
        path: the file.
        columns: the columns the caller uses; each must be present.
        made_by: the stage that writes the file, named when it is missing.

    Raises:
        FileNotFoundError: if the file does not exist, naming the stage to run.
        InputError: naming the file and the missing columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path} (run the {made_by} stage)")
    frame = pd.read_csv(path, keep_default_na=False)
    missing = missing_columns(frame, columns)
    if missing:
        raise InputError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
    return frame


def write_manifest(
    frame: pd.DataFrame, path: str | os.PathLike, columns: Iterable[str] = ()
) -> None:
    """Writes a manifest atomically, without its index.

    Args:
        frame: the rows.
        path: the file.
        columns: the columns the written file must hold.

    Raises:
        ValueError: naming the file and the missing columns.
    """
    missing = missing_columns(frame, columns)
    if missing:
        raise ValueError(f"{path}: manifest to write lacks column(s) {', '.join(missing)}")
    write_csv(path, frame)
