"""The ``synthetic`` source: :func:`generate_synthetic` writes the whole dataset (patients
in worker processes, then the case-description CSVs), and :func:`write_retriever_download`
lays it out as the NBIA Data Retriever leaves a download.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom

from mammocad.io import write_csv
from mammocad.parallel import imap
from mammocad.sources.layout import COLUMNS, SPLIT_PREFIX
from mammocad.sources.registry import register_source
from mammocad.sources.synthetic.design import SyntheticConfig, _plan
from mammocad.sources.synthetic.patient import _generate_patient

log = logging.getLogger(__name__)


@register_source("synthetic", SyntheticConfig)
def generate_synthetic(
    out_dir: Path, cfg: SyntheticConfig, seed: int, workers: int = 0
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM-format raw dataset into ``out_dir``.

    Writes ``csv/`` (mass, calc and normal case descriptions, train and test) and the
    ``CBIS-DDSM/`` DICOM tree; ``source.json`` is left to the caller. Patients are rendered
    in parallel, one at a time per worker, so memory does not grow with the dataset.

    Args:
        out_dir: the raw-data directory (created if absent; expected to be empty).
        cfg: sizes, class shares and quirk rates.
        seed: non-negative seed; the same seed and config give byte-identical files.
        workers: processes, ``0`` for every core; the output does not depend on it.

    Returns:
        A summary: counts of patients, full images, ROIs by type and pathology, normal
        images and the quirks injected.

    Raises:
        ValueError: for a negative or non-integer seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out_dir = Path(out_dir)
    (out_dir / "csv").mkdir(parents=True, exist_ok=True)
    (out_dir / "CBIS-DDSM").mkdir(parents=True, exist_ok=True)
    tasks = _plan(cfg, seed, out_dir)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {
        (kind, split): [] for kind in COLUMNS for split in SPLIT_PREFIX
    }
    counts: Counter = Counter()
    results = imap(_generate_patient, tasks, workers=workers, desc="synthetic", unit="patient")
    for result in results:
        for key, patient_rows in result.rows.items():
            rows[key].extend(patient_rows)
        counts.update(result.counts)
    for (kind, split), kind_rows in rows.items():
        write_csv(
            out_dir / "csv" / f"{kind}_case_description_{split}_set.csv", _frame(kind, kind_rows)
        )

    n_test = sum(t.split == "test" for t in tasks)
    summary = {
        "patients": cfg.n_patients,
        "patients_train": cfg.n_patients - n_test,
        "patients_test": n_test,
        "image_height": cfg.image_height,
        "full_images": counts["full_images"],
        "normal_images": counts["normal_images"],
        "breasts": {k: counts[f"breasts_{k}"] for k in ("normal", "mass", "calcification")},
        "rois": counts["rois_mass"] + counts["rois_calcification"],
        "rois_by_type": {k: counts[f"rois_{k}"] for k in ("mass", "calcification")},
        "rois_by_pathology": {
            k: counts[f"rois_{k}"] for k in ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
        },
        "film_labels": counts["film_labels"],
        "quirks": {
            k: counts[k]
            for k in (
                "swapped_columns",
                "missing_series",
                "mismatched_masks",
                "elongated_crops",
                "newline_cells",
                "stray_whitespace_cells",
            )
        },
    }
    log.info("synthetic CBIS-DDSM written to %s: %s", out_dir, summary)
    return summary


def _frame(kind: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Puts rows into the column names and order of one case-description file."""
    columns = COLUMNS[kind]
    rename = {"density": columns[1]}
    if kind == "mass":
        rename.update(descriptor_a="mass shape", descriptor_b="mass margins")
    elif kind == "calc":
        rename.update(descriptor_a="calc type", descriptor_b="calc distribution")
    frame = pd.DataFrame(rows).rename(columns=rename) if rows else pd.DataFrame()
    return frame.reindex(columns=columns)


#: Columns of the NBIA Data Retriever's ``metadata.csv`` (recent versions).
RETRIEVER_METADATA_COLUMNS: tuple[str, ...] = (
    "Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID",
    "Study UID", "Study Description", "Study Date", "Series Description", "Manufacturer",
    "Modality", "SOP Class Name", "SOP Class UID", "Number of Images", "File Size",
    "File Location", "Download Timestamp",
)  # fmt: skip
#: The four official case-description files (the synthetic ``normal_*`` ones are extras).
_OFFICIAL_CSVS = tuple(
    f"{kind}_case_description_{split}_set.csv"
    for kind in ("mass", "calc")
    for split in ("train", "test")
)


def write_retriever_download(
    dest: Path,
    cfg: SyntheticConfig,
    seed: int,
    workers: int = 0,
    csv_dir: Path | None = None,
    tcia_headers: bool = True,
) -> dict[str, Any]:
    """Writes a synthetic CBIS-DDSM as the NBIA Data Retriever leaves a download on disk.

    ``dest/CBIS-DDSM/<Subject ID>/<study>/<series>/1-N.dcm`` and ``dest/metadata.csv``
    (retriever columns, ``File Location`` relative, starting ``./``), for trying and testing
    ``data.cbis_ddsm.root`` without the real 164 GB. The four official case-description
    CSVs go to ``csv_dir`` (default ``dest/csv``); the synthetic ``normal_*`` files are
    dropped, as the real collection has no normal images, so normal breasts' series are
    extra series a reader must ignore (use ``normal_fraction: 0`` to have none).

    Args:
        dest: an empty or absent folder.
        cfg: the synthetic data set's settings.
        seed: its seed.
        workers: processes (0 = every core).
        csv_dir: where the case descriptions go.
        tcia_headers: give every file the identifying fields TCIA's files carry
            (``PatientName`` = the subject id, ``StudyID`` = ``DDSM``, a private ``CTP``
            block), which reading such a folder must remove.

    Returns:
        The synthetic source's summary.
    """
    dest = Path(dest)
    summary = generate_synthetic(dest, cfg, seed=seed, workers=workers)
    target = Path(csv_dir) if csv_dir is not None else dest / "csv"
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((dest / "csv").glob("*.csv")):
        if path.name in _OFFICIAL_CSVS:
            path.replace(target / path.name)
        else:
            path.unlink()
    if target != dest / "csv":
        (dest / "csv").rmdir()
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted((dest / "CBIS-DDSM").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if tcia_headers:
            ds.PatientName = ds.PatientID
            ds.StudyID = "DDSM"
            block = ds.private_block(0x0013, "CTP", create=True)
            block.add_new(0x10, "LO", "CBIS-DDSM")
            ds.save_as(path, enforce_file_format=True)
        folder = path.parent.relative_to(dest).as_posix()
        row = rows.setdefault(
            str(ds.SeriesInstanceUID),
            {
                "Series UID": str(ds.SeriesInstanceUID),
                "Collection": "CBIS-DDSM",
                "3rd Party Analysis": "NO",
                "Data Description URI": "",
                "Subject ID": str(ds.PatientID),
                "Study UID": str(ds.StudyInstanceUID),
                "Study Description": "",
                "Study Date": str(ds.get("StudyDate", "")),
                "Series Description": str(ds.SeriesDescription),
                "Manufacturer": "",
                "Modality": str(ds.Modality),
                "SOP Class Name": "Secondary Capture Image Storage",
                "SOP Class UID": str(ds.SOPClassUID),
                "Number of Images": 0,
                "File Size": 0,
                "File Location": f"./{folder}",
                "Download Timestamp": "",
            },
        )
        row["Number of Images"] += 1
        row["File Size"] += path.stat().st_size
    frame = pd.DataFrame(list(rows.values()), columns=list(RETRIEVER_METADATA_COLUMNS))
    write_csv(dest / "metadata.csv", frame)
    return summary
