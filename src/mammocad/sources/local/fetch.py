"""The ``local`` source: its ``data.local`` config and :func:`fetch_local`, which reads the
labels, plans, writes every image in worker processes and lists what was skipped.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad.errors import InputError, InputNotFound, ParamsError
from mammocad.io import write_csv
from mammocad.parallel import imap
from mammocad.paths import resolve_inside
from mammocad.sources.layout import KIND_FILE, check_test_fraction, write_case_csvs
from mammocad.sources.local.labels import NOT_LISTED, SKIPPED_COLUMNS, read_labels
from mammocad.sources.local.plan import _assign_splits, _plan
from mammocad.sources.local.write import _Task, _write_task
from mammocad.sources.registry import register_source

log = logging.getLogger(__name__)


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


def _safe_id(value: str) -> str:
    """A patient id usable in folder names and short enough for DICOM PatientID.

    24 characters keep every subject (prefix, side, view, row suffix, ROI number) within
    PatientID's 64.
    """
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", value)[:24] or "X"


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
