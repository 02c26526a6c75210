"""The labels CSV of the ``local`` source: its columns and vocabularies, the skip reasons
of files it does or does not list, and :func:`read_labels`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mammocad.errors import InputError, InputNotFound
from mammocad.imaging import LATERALITY_ALIASES
from mammocad.manifest import VIEWS

REQUIRED_COLUMNS = ("file", "patient_id", "pathology")
OPTIONAL_COLUMNS = (
    "laterality",
    "view",
    "abnormality_type",
    "split",
    "mask",
    "roi_x0",
    "roi_y0",
    "roi_x1",
    "roi_y1",
)
SKIPPED_COLUMNS = ("file", "row", "reason")
NOT_LISTED = "not listed in labels"
NOT_FOUND = "listed in labels but not found"
_PATHOLOGIES = ("NORMAL", "BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
_SIDES = LATERALITY_ALIASES
_VIEWS = VIEWS
_TYPES = {"mass": "mass", "calcification": "calcification", "calc": "calcification"}


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Reads the labels CSV: string cells, stripped; normalised column names.

    Returns:
        One row per CSV row with every column of :data:`REQUIRED_COLUMNS` and
        :data:`OPTIONAL_COLUMNS` (absent optional ones empty) and ``row``, the row's line
        number in the file (the header is line 1).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: naming the file and the column for a missing required column, or for
            an unparseable CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"labels CSV {path} not found (set data.local.labels)")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
        )
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the labels CSV is empty (expected a header line)") from None
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: the labels CSV is not UTF-8 text (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8"
        ) from None
    except (pd.errors.ParserError, OSError) as exc:
        raise InputError(f"{path}: cannot read labels CSV: {exc}") from None
    frame.columns = [_column_key(c) for c in frame.columns]
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            header = ",".join(frame.columns)
            hint = (
                "; columns must be separated by commas, not semicolons or tabs"
                if len(frame.columns) == 1 and any(s in header for s in ";\t")
                else ""
            )
            raise InputError(
                f"{path}: missing required column {column!r} "
                f"(required: {', '.join(REQUIRED_COLUMNS)}){hint}"
            )
    if frame.empty:
        raise InputError(f"{path}: the labels CSV has a header but no rows")
    frame = frame.apply(lambda col: col.astype(str).str.strip())
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame["row"] = np.arange(len(frame)) + 2
    return frame[[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "row"]].reset_index(drop=True)
