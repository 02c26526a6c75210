"""A user's own mammograms, labelled by a CSV, as a raw-data source in the CBIS-DDSM layout.

Any folder of greyscale mammograms can feed the pipeline (paper §3.1's models then train
and test on it) once a labels CSV says what each image shows. The images are wrapped into
the layout every source writes (:mod:`mammocad.sources.layout`): one 16-bit Secondary
Capture "full mammogram images" series per image and, when a lesion mask or box is given,
one "ROI mask images" series with the crop and the binary mask; case-description rows
carry ``dataset`` = ``local``.

Images (found by content, searched recursively below ``root``; hidden files and folders
are ignored; read by :mod:`mammocad.imaging`):

* DICOM, any transfer syntax :func:`mammocad.dicom.read_pixels` decodes; its checks apply
  (another modality such as CT, colour, multi-frame, corrupt pixel data are skipped with
  its reason). Its 16-bit output (stored range stretched to ``0..65535``, VOI applied,
  MONOCHROME1 inverted) is what is written.
* PNG, 8- or 16-bit greyscale. 8-bit values are multiplied by 257; 16-bit values are kept.
  Colour (or grey + alpha) PNGs are skipped as ``not greyscale``.
* PGM (``P5`` binary or ``P2`` text), values stretched from ``0..maxval`` to ``0..65535``.

Labels CSV (``labels``; default ``<root>/labels.csv``), one row per image. Header names
are matched case-insensitively, spaces and dashes read as underscores; cells are
stripped; other columns are ignored. Columns:

* ``file`` (required): image path relative to ``root`` (``/`` or ``\\`` separators).
* ``patient_id`` (required): patient identifier; all images of a patient share one
  split. It is copied to the outputs as given: use a pseudonym.
* ``pathology`` (required): ``NORMAL``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK`` (kept
  as such, counted as benign) or ``MALIGNANT``, in any letter case.
* ``laterality``: ``LEFT``/``RIGHT`` (also ``L``/``R``). Empty: the DICOM
  ImageLaterality/Laterality, else inferred from the image (the half holding more tissue
  is the chest wall side: left for a LEFT breast, as in CBIS-DDSM).
* ``view``: ``CC`` or ``MLO``. Empty: the DICOM ViewPosition, else left empty.
* ``abnormality_type``: ``mass`` or ``calcification`` for a finding (default ``mass``);
  ignored for ``NORMAL`` rows.
* ``split``: ``train`` or ``test``. Patients without one are drawn with the run's seed
  (``test_fraction`` of them, stratified by their worst pathology); the rows of one
  patient must not name different splits.
* ``mask``: path (relative to ``root``) of a binary lesion mask of the image's size, in
  any of the image formats; non-zero = lesion. Ignored for ``NORMAL`` rows.
* ``roi_x0``, ``roi_y0``, ``roi_x1``, ``roi_y1``: a lesion box in pixels (x = column,
  y = row; ``x1``/``y1`` exclusive, clipped to the image), used when there is no
  ``mask``; all four or none.

Example::

    file,patient_id,pathology,laterality,view,abnormality_type,mask,roi_x0,roi_y0,roi_x1,roi_y1
    p01/left_cc.dcm,P01,MALIGNANT,LEFT,CC,mass,p01/left_cc_mask.png,,,,
    p01/right_cc.dcm,P01,NORMAL,RIGHT,CC,,,,,,
    p02/img7.png,P02,benign,L,MLO,calcification,,1200,830,1460,1010

A finding without mask or box gets a case-description row with empty ROI paths: the image
is kept with its pathology and ``convert`` records its ROI as missing. The ROI crop is the
lesion's bounding box plus a margin (:func:`mammocad.boxes.relative_margins`), as for DDSM.

Everything that cannot be used is recorded with its reason, returned in the summary and
written to ``local_skipped.csv`` (``file, row, reason``): files under ``root`` that no row
lists (``not listed in labels``), rows whose file is missing (``listed in labels but not
found``), unreadable, colour or non-mammographic images, bad label values, unusable masks
(the image is then kept without its ROI), images below the shared minimum size
(:mod:`mammocad.image_rules`). Errors naming the labels file (and rows): a missing, empty,
header-only, non-UTF-8 or not comma-separated CSV, a required column missing, ``file`` or
``mask`` paths leaving ``root`` (absolute, ``..``, symbolic links: nothing is read), one
file listed twice with different labels (both row numbers), a patient in both splits, no
row giving a usable image. A file listed twice with the same labels keeps its first row.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammocad.boxes import bounding_box, crop_box, relative_margins
from mammocad.dicom import SkipImage
from mammocad.errors import InputError, InputNotFound, ParamsError
from mammocad.image_rules import size_problem
from mammocad.imaging import LATERALITY_ALIASES, read_image
from mammocad.io import write_csv
from mammocad.manifest import PATHOLOGY_CLASS, VIEWS
from mammocad.manifest import worst as worst_of
from mammocad.parallel import imap
from mammocad.patches import chest_wall_on_right
from mammocad.paths import PathEscape, resolve_inside
from mammocad.sources.ddsm import split_patients
from mammocad.sources.layout import (
    KIND_FILE,
    KIND_PREFIX,
    SPLIT_PREFIX,
    check_test_fraction,
    write_case_csvs,
    write_series,
)
from mammocad.sources.registry import register_source

log = logging.getLogger(__name__)

DATASET = "local"
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


@dataclass(frozen=True)
class LocalConfig:
    """The ``data.local`` params section.

    Attributes:
        root: folder of the user's images, searched recursively.
        labels: the labels CSV (format in the module notes); empty means
            ``<root>/labels.csv``.
        test_fraction: share of the patients without a ``split`` value drawn into the test
            split (seeded, stratified by worst pathology).
    """

    root: str = ""
    labels: str = ""
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("root", "labels"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(
                    f"LocalConfig.{name} must be a string, got {getattr(self, name)!r}"
                )
        check_test_fraction("LocalConfig", self.test_fraction)


# --------------------------------------------------------------------------------------
# reading images


# --------------------------------------------------------------------------------------
# the labels CSV


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


@dataclass(frozen=True)
class _Task:
    """One labelled image to read and write."""

    out_dir: Path
    path: Path
    shown: str  # the labels' file cell
    row: int
    patient_id: str
    subject_key: str  # the patient id made safe for folder names
    suffix: str  # "" or "_R<row>", which keeps subjects unique
    split: str
    pathology: str
    kind: str  # mass | calcification | normal
    laterality: str
    view: str
    mask: Path | None
    mask_shown: str
    box: tuple[int, int, int, int] | None


def _safe_id(value: str) -> str:
    """A patient id usable in folder names and short enough for DICOM PatientID.

    24 characters keep every subject (prefix, side, view, row suffix, ROI number) within
    PatientID's 64.
    """
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", value)[:24] or "X"


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


# --------------------------------------------------------------------------------------
# writing (in worker processes)


def _write_series(
    task: _Task, subject: str, description: str, images: list[np.ndarray], side: str, view: str
) -> list[str]:
    return write_series(
        task.out_dir / "CBIS-DDSM" / subject,
        DATASET,
        subject,
        description,
        images,
        side=side,
        view=view,
        study_folder=lambda uid: f"LOCAL-{uid[-5:]}",
    )


def _lesion_mask(task: _Task, shape: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """The lesion mask (bool) from the mask file or the box, or a reason it is unusable."""
    if task.mask is not None:
        if not task.mask.is_file():
            return None, f"mask {task.mask_shown} not found: image kept without ROI"
        try:
            mask_image = read_image(task.mask, expect_mammogram=False)
        except Exception as exc:  # a bad mask loses the ROI, not the image
            why = exc.reason if isinstance(exc, SkipImage) else type(exc).__name__
            return None, f"unusable mask {task.mask_shown} ({why}): image kept without ROI"
        if mask_image.pixels.shape != shape:
            h, w = mask_image.pixels.shape
            return None, (
                f"mask size {h}x{w} does not match image {shape[0]}x{shape[1]}: "
                "image kept without ROI"
            )
        mask = mask_image.pixels > 0
        if not mask.any():
            return None, "empty mask: image kept without ROI"
        return mask, ""
    if task.box is not None:
        x0, y0, x1, y1 = task.box
        h, w = shape
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            return None, f"ROI box {task.box} outside the {h}x{w} image: image kept without ROI"
        mask = np.zeros(shape, dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask, ""
    return None, ""


def _write_task(task: _Task) -> dict[str, Any]:
    """Reads one image and writes its series; returns its CSV row, skips and counts."""
    result: dict[str, Any] = {"row": None, "skipped": [], "counts": Counter()}
    try:
        image = read_image(task.path)
    except SkipImage as skip:
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": skip.reason})
        return result
    except Exception as exc:  # a bad image is skipped, never fatal
        reason = " ".join(f"unreadable image: {type(exc).__name__}: {exc}".split())
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": reason})
        return result
    pixels = image.pixels
    problem = size_problem(*pixels.shape)
    if problem:
        result["skipped"].append({"file": task.shown, "row": task.row, "reason": problem})
        return result
    side = task.laterality or image.laterality
    view = task.view or image.view
    if not task.laterality:
        if image.laterality:
            result["counts"]["laterality_from_dicom"] += 1
        else:
            side = "RIGHT" if chest_wall_on_right(pixels) else "LEFT"
            result["counts"]["laterality_inferred"] += 1
    if not task.view and image.view:
        result["counts"]["view_from_dicom"] += 1
    subject = (
        f"{KIND_PREFIX[task.kind]}-{SPLIT_PREFIX[task.split]}_{task.subject_key}"
        f"_{side}_{view or 'UNKNOWN'}{task.suffix}"
    )
    (image_path,) = _write_series(task, subject, "full mammogram images", [pixels], side, view)
    result["counts"]["images_written"] += 1
    row: dict[str, Any] = {
        "patient_id": task.patient_id,
        "left or right breast": side,
        "image view": view,
        "abnormality id": 0 if task.kind == "normal" else 1,
        "abnormality type": task.kind,
        "assessment": "",
        "pathology": task.pathology,
        "subtlety": "",
        "image file path": image_path,
        "cropped image file path": "",
        "ROI mask file path": "",
        "dataset": DATASET,
    }
    if task.kind == "normal":
        result["counts"]["normal_images"] += 1
        row.update({"breast_density": "", "assessment": 1, "subtlety": 0})
        result["row"] = row
        return result
    if task.kind == "mass":
        row.update({"breast_density": "", "mass shape": "", "mass margins": ""})
    else:
        row.update({"breast density": "", "calc type": "", "calc distribution": ""})
    mask, reason = _lesion_mask(task, pixels.shape)
    if mask is not None:
        box = bounding_box(mask)
        x0, y0, x1, y1 = crop_box(box, mask.shape, relative_margins(box))
        crop = np.ascontiguousarray(pixels[y0:y1, x0:x1])
        mask8 = np.where(mask, np.uint8(255), np.uint8(0))
        crop_path, mask_path = _write_series(
            task, f"{subject}_1", "ROI mask images", [crop, mask8], side, view
        )
        row.update({"cropped image file path": crop_path, "ROI mask file path": mask_path})
        result["counts"][f"rois_{task.kind}"] += 1
        result["counts"][f"rois_{task.pathology}"] += 1
    else:
        result["counts"]["findings_without_roi"] += 1
        if reason:
            shown = task.mask_shown or task.shown
            result["skipped"].append({"file": shown, "row": task.row, "reason": reason})
    result["row"] = row
    return result


# --------------------------------------------------------------------------------------
# the source


def _walk(root: Path) -> list[Path]:
    """Every non-hidden file below ``root``, sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / f for f in sorted(files) if not f.startswith("."))
    return found


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@register_source("local", LocalConfig, paths=("root", "labels"))
def fetch_local(out_dir: Path, cfg: LocalConfig, seed: int, workers: int = 0) -> dict[str, Any]:
    """Writes a user's labelled images into ``out_dir`` in the CBIS-DDSM layout.

    See the module notes for the image types and the labels CSV format.

    Args:
        out_dir: the raw-data folder (``csv/``, ``CBIS-DDSM/`` and ``local_skipped.csv``
            are written; ``source.json`` is left to the caller).
        cfg: the ``data.local`` section.
        seed: seed of the train/test draw of patients without a ``split`` value.
        workers: processes, 0 for every core.

    Returns:
        A summary: counts of labels rows, images written, normal images, ROIs by type and
        pathology, findings without ROI, laterality/view taken from DICOM or inferred,
        patients per split, ``skipped`` rows (``file, row, reason``) and
        ``skipped_by_reason``.

    Raises:
        ValueError: if ``cfg.root`` is empty, the labels CSV lacks a required column, or a
            patient's rows name both splits.
        FileNotFoundError: if ``cfg.root`` or the labels CSV does not exist.
    """
    if not cfg.root:
        raise ParamsError("data.local.root is empty: set it to the folder of your images")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise InputNotFound(f"data.local.root {root} is not a folder")
    labels_path = Path(cfg.labels).expanduser() if cfg.labels else root / "labels.csv"
    labels = read_labels(labels_path)
    out_dir = Path(out_dir)

    skipped: list[dict[str, Any]] = []
    counts: Counter = Counter()
    plans = _plan(labels, root, skipped, counts, labels_path)
    split = _assign_splits(plans, labels_path, cfg.test_fraction, seed)

    # Subjects must be unique: <patient>_<side>_<view> when the labels give both and no
    # other row has them, else the labels row number is appended.
    keys = Counter(
        (_safe_id(p["patient_id"]), p["laterality"], p["view"])
        for p in plans
        if p["laterality"] and p["view"]
    )
    tasks = []
    for plan in plans:
        key = (_safe_id(plan["patient_id"]), plan["laterality"], plan["view"])
        unique = plan["laterality"] and plan["view"] and keys[key] == 1
        tasks.append(
            _Task(
                out_dir=out_dir,
                path=plan["path"],
                shown=plan["shown"],
                row=plan["row"],
                patient_id=plan["patient_id"],
                subject_key=key[0],
                suffix="" if unique else f"_R{plan['row']}",
                split=split[plan["patient_id"]],
                pathology=plan["pathology"],
                kind=plan["kind"],
                laterality=plan["laterality"],
                view=plan["view"],
                mask=plan["mask"],
                mask_shown=plan["mask_shown"],
                box=plan["box"],
            )
        )

    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    written: dict[str, str] = {}
    results = imap(_write_task, tasks, workers=workers, desc="local", unit="img")
    for task, result in zip(tasks, results, strict=True):
        counts.update(result["counts"])
        skipped.extend(result["skipped"])
        if result["row"] is not None:
            rows.setdefault((KIND_FILE[task.kind], task.split), []).append(result["row"])
            written[task.patient_id] = task.split
    if not rows:
        reasons = Counter(s["reason"] for s in skipped).most_common(3)
        raise InputError(
            f"{labels_path}: none of its {len(labels)} rows gave a usable image "
            f"(root {root}); most frequent reasons: "
            + "; ".join(f"{reason} ×{n}" for reason, n in reasons)
        )
    csv_counts = write_case_csvs(out_dir, rows)

    # Every file under root that no row uses: listed images, masks and the labels CSV.
    used = {p["path"] for p in plans} | {p["mask"] for p in plans if p["mask"] is not None}
    listed = {resolve_inside(root, c) for c in labels["file"] if c}
    listed |= {resolve_inside(root, c) for c in labels["mask"] if c}
    listed.add(labels_path.resolve())
    for path in _walk(root):
        if path.resolve() not in listed and path.resolve() not in used:
            skipped.append({"file": _rel(path, root), "row": "", "reason": NOT_LISTED})
    write_csv(out_dir / "local_skipped.csv", pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))

    by_reason = Counter(re.split(r"[:(]", s["reason"], maxsplit=1)[0].strip() for s in skipped)
    summary = {
        "root": str(root),
        "labels": str(labels_path),
        "labels_rows": len(labels),
        "images_written": counts["images_written"],
        "normal_images": counts["normal_images"],
        "rois": counts["rois_mass"] + counts["rois_calcification"],
        "rois_by_type": {k: counts[f"rois_{k}"] for k in ("mass", "calcification")},
        "rois_by_pathology": {
            k: counts[f"rois_{k}"] for k in ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
        },
        "findings_without_roi": counts["findings_without_roi"],
        "roi_ignored_for_normal_rows": counts["roi_ignored_for_normal_rows"],
        "laterality_from_dicom": counts["laterality_from_dicom"],
        "laterality_inferred": counts["laterality_inferred"],
        "view_from_dicom": counts["view_from_dicom"],
        "patients_train": sum(v == "train" for v in written.values()),
        "patients_test": sum(v == "test" for v in written.values()),
        "csv_rows": csv_counts,
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "skipped": skipped,
    }
    log.info(
        "local images from %s: %d written (%d normal), %d ROIs; %d files or rows skipped",
        root,
        summary["images_written"],
        summary["normal_images"],
        summary["rois"],
        len(skipped),
    )
    return summary
