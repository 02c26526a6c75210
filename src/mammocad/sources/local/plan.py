"""The labels rows of the ``local`` source validated into plans: paths kept inside the root,
label values checked, duplicate rows compared, ROI boxes read, and each patient's split
(the labels' value, else a seeded stratified draw).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.errors import InputError
from mammocad.manifest import PATHOLOGY_CLASS
from mammocad.manifest import worst as worst_of
from mammocad.paths import PathEscape, resolve_inside
from mammocad.sources.ddsm import split_patients
from mammocad.sources.layout import SPLIT_PREFIX
from mammocad.sources.local.labels import (
    _PATHOLOGIES,
    _SIDES,
    _TYPES,
    _VIEWS,
    NOT_FOUND,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
)


def _box(row: pd.Series) -> tuple[tuple[int, int, int, int] | None, str]:
    """The row's ROI box and an error text (both empty when the row has none)."""
    cells = [row[f"roi_{k}"] for k in ("x0", "y0", "x1", "y1")]
    if not any(cells):
        return None, ""
    try:
        x0, y0, x1, y1 = (int(float(c)) for c in cells)
    except ValueError:
        return None, f"invalid ROI box {cells}: four integers needed"
    if x1 <= x0 or y1 <= y0:
        return None, f"invalid ROI box ({x0}, {y0}, {x1}, {y1}): x1/y1 must exceed x0/y0"
    return (x0, y0, x1, y1), ""


def _plan(
    labels: pd.DataFrame,
    root: Path,
    skipped: list[dict[str, Any]],
    counts: Counter,
    labels_path: Path,
) -> list[dict[str, Any]]:
    """Validates the labels rows; returns the usable ones as plain dicts.

    Raises:
        InputError: naming the rows, when paths leave ``root`` (absolute, ``..``, symbolic
            links) or two rows of one file disagree on its labels.
    """
    plans: list[dict[str, Any]] = []
    first_row: dict[Path, tuple[int, tuple[str, ...]]] = {}
    escapes: list[str] = []
    conflicts: list[str] = []
    for _, row in labels.iterrows():
        number = int(row["row"])
        cell = row["file"].replace("\\", "/")

        def skip(reason: str, shown: str = cell, number: int = number) -> None:
            skipped.append({"file": shown, "row": number, "reason": reason})

        if not cell:
            skip("labels row without a file")
            continue
        try:
            path = resolve_inside(root, cell)
            mask_path = resolve_inside(root, row["mask"]) if row["mask"] else None
        except PathEscape as exc:
            escapes.append(f"row {number}: {exc}")
            continue
        labels_of_row = _label_key(row)
        if path in first_row:
            first, first_labels = first_row[path]
            if first_labels != labels_of_row:
                differ = ", ".join(
                    f"{name} {a or '(empty)'!r} vs {b or '(empty)'!r}"
                    for name, a, b in zip(_LABEL_FIELDS, first_labels, labels_of_row, strict=True)
                    if a != b
                )
                conflicts.append(
                    f"rows {first} and {number} label {cell!r} differently ({differ})"
                )
            else:
                skip(f"duplicate labels row for this file (first: row {first})")
            continue
        first_row[path] = (number, labels_of_row)
        if not path.is_file():
            skip(NOT_FOUND)
            continue
        if not row["patient_id"]:
            skip("labels row without a patient_id")
            continue
        pathology = row["pathology"].upper().replace(" ", "_")
        if pathology not in _PATHOLOGIES:
            skip(f"unknown pathology {row['pathology']!r} (one of {', '.join(_PATHOLOGIES)})")
            continue
        side = row["laterality"].upper()
        if side and side not in _SIDES:
            skip(f"unknown laterality {row['laterality']!r} (LEFT, RIGHT, L or R)")
            continue
        view = row["view"].upper()
        if view and view not in _VIEWS:
            skip(f"unknown view {row['view']!r} (CC or MLO)")
            continue
        kind = row["abnormality_type"].lower() or "mass"
        if kind not in _TYPES:
            skip(f"unknown abnormality_type {row['abnormality_type']!r} (mass or calcification)")
            continue
        split = row["split"].lower()
        if split and split not in SPLIT_PREFIX:
            skip(f"unknown split {row['split']!r} (train or test)")
            continue
        box, box_error = _box(row)
        if box_error:
            skip(box_error)
            continue
        mask_cell = row["mask"].replace("\\", "/")
        normal = pathology == "NORMAL"
        if normal and (mask_cell or box):
            counts["roi_ignored_for_normal_rows"] += 1
        plans.append(
            {
                "path": path,
                "shown": cell,
                "row": number,
                "patient_id": row["patient_id"],
                "pathology": pathology,
                "kind": "normal" if normal else _TYPES[kind],
                "laterality": _SIDES.get(side, ""),
                "view": view,
                "split": split,
                "mask": None if normal else mask_path,
                "mask_shown": mask_cell,
                "box": None if normal else box,
            }
        )
    if escapes:
        raise InputError(
            f"{labels_path}: {len(escapes)} row(s) name files outside data.local.root, "
            f"which are never read: {'; '.join(escapes[:5])}"
        )
    if conflicts:
        raise InputError(
            f"{labels_path}: {len(conflicts)} file(s) listed twice with different labels; "
            f"keep one row per file: {'; '.join(conflicts[:5])}"
        )
    return plans


#: Labels columns two rows of one file must agree on (the file cell aside).
_LABEL_FIELDS = tuple(c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c != "file")


def _label_key(row: pd.Series) -> tuple[str, ...]:
    """A row's labels, normalised as they are read (case, L/R, calc), to compare duplicates."""
    values = []
    for name in _LABEL_FIELDS:
        value = row[name].replace("\\", "/")
        if name == "pathology":
            value = value.upper().replace(" ", "_")
        elif name == "laterality":
            value = _SIDES.get(value.upper(), value.upper())
        elif name == "abnormality_type":
            value = _TYPES.get(value.lower() or "mass", value.lower())
        elif name in ("view", "split"):
            value = value.upper()
        values.append(value)
    return tuple(values)


def _assign_splits(
    plans: list[dict[str, Any]], labels_path: Path, fraction: float, seed: int
) -> dict[str, str]:
    """Patient → split: the labels' value, else a seeded stratified draw."""
    given: dict[str, set[str]] = {}
    worst: dict[str, str] = {}
    for plan in plans:
        pid = plan["patient_id"]
        if plan["split"]:
            given.setdefault(pid, set()).add(plan["split"])
        worst[pid] = worst_of((worst.get(pid, "NORMAL"), PATHOLOGY_CLASS[plan["pathology"]]))
    for pid, values in given.items():
        if len(values) > 1:
            raise InputError(
                f"{labels_path}: patient {pid!r} has rows in both splits ({sorted(values)}); "
                "all images of a patient must share one split"
            )
    split = {pid: next(iter(values)) for pid, values in given.items()}
    drawn = {pid: lab for pid, lab in worst.items() if pid not in split}
    split.update(split_patients(drawn, fraction, seed))
    return split
