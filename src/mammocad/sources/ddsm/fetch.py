"""The ``ddsm`` source: its ``data.ddsm`` config, the seeded patient split, and
:func:`fetch_ddsm`, which plans every case below the root and writes its images in
worker processes.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mammocad.errors import InputNotFound, ParamsError
from mammocad.io import write_csv
from mammocad.parallel import imap
from mammocad.sources.ddsm.cases import _Case, _plan_case, _skip
from mammocad.sources.ddsm.write import _ImageTask, _write_image
from mammocad.sources.layout import check_test_fraction, write_case_csvs
from mammocad.sources.registry import register_source
from mammocad.split import draw_test_patients

log = logging.getLogger(__name__)

#: Columns of ``ddsm_skipped.csv`` and of the summary's ``skipped`` rows.
SKIPPED_COLUMNS = ("file", "case", "image", "reason")
_SPLIT_STREAM = 0x0DD5  # keeps the split's random stream apart from others
#: At most this many skipped items are listed in the summary (all are in the CSV).
SUMMARY_SKIPS = 200


@dataclass(frozen=True)
class DdsmConfig:
    """The ``data.ddsm`` params section.

    Attributes:
        root: local folder holding DDSM case folders (each with its ``.ics``, ``.LJPEG``
            and ``.OVERLAY`` files) at any depth, e.g. a copy of USF's ``cases/`` tree.
            Nothing is downloaded.
        test_fraction: share of cases (patients) put in the ``*_test_set`` files, drawn
            with the run's seed within each case class (normal, benign, malignant).
    """

    root: str = ""
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not isinstance(self.root, str):
            raise ValueError(f"DdsmConfig.root must be a string, got {self.root!r}")
        check_test_fraction("DdsmConfig", self.test_fraction)


def split_patients(labels: dict[str, str], fraction: float, seed: int) -> dict[str, str]:
    """Patient → ``train``/``test``: a seeded draw stratified by each patient's label.

    :func:`mammocad.split.draw_test_patients` with its ``systematic`` rule: each label's
    test share is within one patient of ``fraction`` and small labels are not left out.

    Args:
        labels: patient id → class label (e.g. the worst pathology).
        fraction: share of patients in the test split, in [0, 1).
        seed: seed of the draw; the result does not depend on the dict's order.
    """
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    test = draw_test_patients(labels, fraction, rng, rule="systematic")
    return {name: "test" if name in test else "train" for name in sorted(labels)}


@register_source("ddsm", DdsmConfig, paths=("root",))
def fetch_ddsm(out_dir: Path, cfg: DdsmConfig, seed: int, workers: int = 0) -> dict[str, Any]:
    """Writes a local DDSM copy into ``out_dir`` in the CBIS-DDSM layout.

    Every ``*.ics`` below ``cfg.root`` is a case (see :mod:`mammocad.sources.ddsm` for the
    formats).
    Cases are split train/test by patient (one case = one patient), seeded and
    stratified by the case's worst pathology. Images are decoded and written in worker
    processes, one image per task.

    Args:
        out_dir: the raw-data folder (``csv/``, ``CBIS-DDSM/`` and ``ddsm_skipped.csv`` are
            written; ``source.json`` is left to the caller).
        cfg: the ``data.ddsm`` section.
        seed: seed of the train/test draw.
        workers: processes, 0 for every core.

    Returns:
        A summary: case, patient, image and ROI counts, ``skipped_by_reason``,
        ``skipped_total`` and the first :data:`SUMMARY_SKIPS` ``skipped`` rows
        (``file, case, image, reason``; all of them are in ``ddsm_skipped.csv``).

    Raises:
        ValueError: if ``cfg.root`` is empty.
        FileNotFoundError: if ``cfg.root`` is not a folder or holds no ``.ics`` file.
    """
    if not cfg.root:
        raise ParamsError("data.ddsm.root is empty: set it to the folder holding the DDSM cases")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise InputNotFound(f"data.ddsm.root {root} is not a folder")
    out_dir = Path(out_dir)
    ics_files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".ics" and p.is_file())
    if not ics_files:
        raise InputNotFound(f"no DDSM case (*.ics file) under {root}")

    skipped: list[dict[str, str]] = []
    counts: Counter = Counter()
    cases: list[_Case] = []
    seen: dict[str, Path] = {}
    for ics_path in ics_files:
        case = _plan_case(ics_path, root, skipped, counts)
        if case is None:
            continue
        name = case.info.case_name
        if name in seen:
            first = seen[name]
            skipped.append(
                _skip(ics_path, name, "", f"duplicate case {name} (first: {first})", root)
            )
            continue
        seen[name] = ics_path
        if case.plans:
            cases.append(case)
    split = split_patients({c.info.case_name: c.label for c in cases}, cfg.test_fraction, seed)

    tasks = [
        _ImageTask(
            out_dir=out_dir,
            case_name=case.info.case_name,
            patient_id=f"DDSM_{case.info.case_name}",
            split=split[case.info.case_name],
            density="" if case.info.density is None else str(case.info.density),
            study_date=case.info.date_of_study,
            view=plan["view"],
            ljpeg=plan["ljpeg"],
            ics=plan["ics"],
            abnormalities=plan["abn"],
            normal=plan["normal"],
        )
        for case in cases
        for plan in case.plans
    ]
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    written_patients: dict[str, str] = {}
    results = imap(_write_image, tasks, workers=workers, desc="ddsm", unit="img")
    for task, result in zip(tasks, results, strict=True):
        counts.update(result["counts"])
        for skip in result["skipped"]:
            skipped.append(_skip(skip["file"], skip["case"], skip["image"], skip["reason"], root))
        for file_kind, row in result["rows"]:
            rows.setdefault((file_kind, task.split), []).append(row)
            written_patients[task.patient_id] = task.split
    csv_counts = write_case_csvs(out_dir, rows)
    write_csv(out_dir / "ddsm_skipped.csv", pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)))

    by_reason = Counter(_reason_key(s["reason"]) for s in skipped)
    summary = {
        "root": str(root),
        "cases_found": len(ics_files),
        "cases_used": len({t.case_name for t in tasks}),
        "patients_train": sum(v == "train" for v in written_patients.values()),
        "patients_test": sum(v == "test" for v in written_patients.values()),
        "full_images": counts["full_images"],
        "normal_images": counts["normal_images"],
        "rois": counts["rois_mass"] + counts["rois_calcification"],
        "rois_by_type": {k: counts[f"rois_{k}"] for k in ("mass", "calcification")},
        "rois_by_pathology": {
            k: counts[f"rois_{k}"] for k in ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
        },
        "rois_without_outline": counts["rois_without_outline"],
        "abnormalities_skipped": counts["abnormalities_skipped"],
        "abnormalities_with_several_lesion_types": counts[
            "abnormalities_with_several_lesion_types"
        ],
        "unmarked_images_of_abnormal_cases": counts["unmarked_images_of_abnormal_cases"],
        "bits_per_pixel_understated": counts["bits_per_pixel_understated"],
        "csv_rows": csv_counts,
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "skipped_total": len(skipped),
        # The full list is in ddsm_skipped.csv; a whole DDSM copy skips thousands of
        # unmarked images, too many for source.json.
        "skipped": skipped[:SUMMARY_SKIPS],
    }
    log.info(
        "DDSM from %s: %d cases, %d images (%d normal), %d ROIs; %d items skipped",
        root,
        summary["cases_used"],
        summary["full_images"],
        summary["normal_images"],
        summary["rois"],
        len(skipped),
    )
    return summary


def _reason_key(reason: str) -> str:
    """A skip reason without its variable details, for counting."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip()
