"""The ``cbis-ddsm`` source from a copy on disk (:func:`fetch_from_root`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad import cbis
from mammocad.errors import InputError, InputNotFound
from mammocad.paths import is_inside
from mammocad.sources.retriever.index import Scan, index_headers, scan_root
from mammocad.sources.retriever.linking import MISSING_NAME, link_series
from mammocad.sources.retriever.metadata import read_metadata
from mammocad.sources.tcia.api import _Client
from mammocad.sources.tcia.case_csvs import _write_csvs
from mammocad.sources.tcia.config import CSV_NAMES, TciaConfig
from mammocad.sources.tcia.series import patient_number

log = logging.getLogger(__name__)


def case_csvs_from_root(scan: Scan, names: Iterable[str], root: Path) -> dict[str, Path] | None:
    """The four case-description files found below the root, or None if one is absent.

    Raises:
        InputError: if a file name occurs twice (which one is meant cannot be guessed).
    """
    out = {}
    for name in names:
        paths = scan.csvs.get(name, [])
        if len(paths) > 1:
            raise InputError(
                f"data.cbis_ddsm.root {root} holds {name} {len(paths)} times "
                f"({', '.join(str(p) for p in paths[:2])}); set data.cbis_ddsm.csv_dir to "
                "the folder of the copy to use"
            )
        if not paths:
            return None
        out[name] = paths[0]
    return out


def log_summary(summary: dict[str, Any], started: float) -> None:
    """One line with what the root gave, and a warning for what it lacks."""
    log.info(
        "root: %d series linked of %d named by the case descriptions (%d files, %s), "
        "%d missing (%.1f%%), %d extra series ignored (%d files), %d unreadable and %d "
        "duplicate files skipped; headers %d cached, %d read; %.1f s",
        summary["series_linked"],
        summary["series_needed"],
        summary["files_linked"],
        ", ".join(f"{n} {k}" for k, n in summary["link_methods"].items()) or "nothing linked",
        summary["series_missing"],
        100 * summary["series_missing_fraction"],
        summary["series_extra"],
        summary["files_extra"],
        summary["files_unreadable"],
        summary["files_duplicate"],
        summary["headers_cached"],
        summary["headers_read"],
        time.monotonic() - started,
    )
    if summary["series_missing"]:
        log.warning(
            "%d series named by the case descriptions are not under the root; they are "
            "listed with reasons in data/raw/%s, and convert counts the images and ROIs "
            "they hold against convert.max_skipped_fraction",
            summary["series_missing"],
            MISSING_NAME,
        )
    if summary["metadata_disagreements"]:
        log.warning(
            "%d series lie elsewhere than metadata.csv says; the DICOM headers were followed",
            summary["metadata_disagreements"],
        )
    if summary["patient_id_mismatches"]:
        log.warning(
            "%d files whose PatientID differs from their case-description subject",
            summary["patient_id_mismatches"],
        )


def _first_patients(sources: dict[str, Path], abnormality: str, n: int) -> set[int]:
    """The ``n`` lowest patient numbers among the case-description rows of the chosen kind."""
    numbers: set[int] = set()
    for name, path in sources.items():
        if abnormality not in ("all", name.split("_", 1)[0]):
            continue
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        column = next((c for c in frame.columns if c.strip().lower() == "patient_id"), None)
        if column is not None:
            numbers.update(n for n in map(patient_number, frame[column]) if n is not None)
    return set(sorted(numbers)[:n])


def fetch_from_root(
    out_dir: Path, cfg: TciaConfig, download_dir: Path, workers: int = 0
) -> dict[str, Any]:
    """Builds the CBIS-DDSM raw layout (§3.1) in ``out_dir`` from the copy at ``cfg.root``.

    Nothing is fetched from the image API. ``out_dir/csv`` gets the four case descriptions
    (cut to ``abnormality`` and ``max_patients`` as for a download), the files of every
    series they name are linked in at their paths below the root (see the module notes),
    and ``missing_series.csv`` and ``root_skipped.csv`` list what could not be used.

    Args:
        out_dir: the raw-data folder being written.
        cfg: the ``data.cbis_ddsm`` settings; ``root`` is set.
        download_dir: ``data.download_dir``; the header index is cached below it.
        workers: processes reading headers (0 = every core).

    Returns:
        A summary: ``root``, ``csv_from`` (``csv_dir``, ``root`` or ``network``),
        ``csv_rows``, ``files_seen``, ``headers_cached``, ``headers_read``,
        ``series_needed``, ``series_linked``, ``series_missing``,
        ``series_missing_fraction``, ``series_extra``, ``files_extra``,
        ``files_unreadable``, ``files_duplicate``, ``files_linked``, ``bytes_linked``,
        ``link_methods``, ``patient_id_mismatches``, ``metadata_series_checked``,
        ``metadata_disagreements``.

    Raises:
        InputNotFound: if the root or a ``csv_dir`` file does not exist.
        InputError: if the root is not a folder, holds no (readable) DICOM file, or none of
            the series the case descriptions name.
    """
    started = time.monotonic()
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise InputNotFound(f"data.cbis_ddsm.root {root} does not exist")
    if not root.is_dir():
        raise InputError(f"data.cbis_ddsm.root {root} is not a folder")
    root = root.resolve()
    cache_dir = Path(download_dir) / "cbis-ddsm-root"
    exclude = cache_dir.resolve() if is_inside(root, cache_dir) else None
    scan = scan_root(root, CSV_NAMES, exclude)
    log.info(
        "%s: %d DICOM-like files, %d other files, %d metadata.csv",
        root,
        len(scan.files),
        scan.others,
        len(scan.metadata),
    )
    if not scan.files:
        raise InputError(
            f"data.cbis_ddsm.root {root} holds no DICOM file (.dcm or no extension; "
            f"{scan.others} other files): point it at an NBIA Data Retriever download folder"
        )

    if cfg.csv_dir:
        sources = {name: Path(cfg.csv_dir) / name for name in CSV_NAMES}
        for path in sources.values():
            if not path.is_file():
                raise InputNotFound(f"data.cbis_ddsm.csv_dir {cfg.csv_dir} lacks {path.name}")
        csv_from = "csv_dir"
    elif (found := case_csvs_from_root(scan, CSV_NAMES, root)) is not None:
        sources, csv_from = found, "root"
    else:
        log.info("no case-description CSVs below the root; downloading them from csv_urls")
        sources, csv_from = _Client(cfg).case_csvs(cache_dir), "network"
    patients = _first_patients(sources, cfg.abnormality, cfg.max_patients) or None
    csv_rows = _write_csvs(sources, out_dir / "csv", cfg.abnormality, patients)
    table = cbis.read_case_descriptions(out_dir / "csv")

    entries, counts = index_headers(root, scan, cache_dir, workers)
    metadata = read_metadata(scan.metadata, root)
    summary: dict[str, Any] = {
        "root": str(root),
        "csv_from": csv_from,
        "csv_rows": csv_rows,
        "abnormality": cfg.abnormality,
        "max_patients": cfg.max_patients,
        "files_seen": len(scan.files),
        **counts,
        **link_series(out_dir, root, entries, table, metadata, scan.skipped),
    }
    log_summary(summary, started)
    return summary
