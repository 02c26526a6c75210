"""The ``mias`` source: its ``data.mias`` config and :func:`fetch_mias`, which finds or
downloads the archive, unpacks it, and writes every film in worker processes.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammocad.errors import InputError, InputNotFound
from mammocad.io import sha256_file
from mammocad.manifest import worst as worst_of
from mammocad.parallel import imap
from mammocad.sources.layout import SPLIT_PREFIX, write_case_csvs
from mammocad.sources.mias.archive import (
    _SHA256,
    MIAS_URL,
    _archive_name,
    _index_folder,
    download_archive,
    extract_archive,
)
from mammocad.sources.mias.film import _convert_film, _FilmTask
from mammocad.sources.mias.info import MiasRow, parse_info, split_patients
from mammocad.sources.registry import register_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiasConfig:
    """The ``data.mias`` params section.

    Attributes:
        archive: local path of ``all-mias.tar.gz`` (or of a sample of it, or of a folder
            holding its extracted files); empty to download it from ``url``.
        url: where to download the archive from when ``archive`` is empty.
        sha256: expected SHA-256 of the archive (hex); empty to skip the check (the
            computed checksum is logged and recorded in the summary).
        roi_margin: half-side of a ROI crop as a multiple of the lesion radius (at least
            :data:`MIN_HALF_SIDE` pixels); at least 1 so the crop holds the whole circle.
        test_fraction: share of patients in the ``*_test_set`` files (mini-MIAS has no
            official split: a seeded, patient-level draw).
    """

    archive: str = ""
    url: str = MIAS_URL
    sha256: str = ""
    roi_margin: float = 1.2
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("roi_margin", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"MiasConfig.{name} must be a number, got {value!r}")
        if not 1.0 <= self.roi_margin <= 10.0:
            raise ValueError(f"MiasConfig.roi_margin must be in [1, 10], got {self.roi_margin}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise ValueError(
                f"MiasConfig.test_fraction must be in [0, 1], got {self.test_fraction}"
            )
        if self.sha256 and not _SHA256.fullmatch(self.sha256.strip().lower()):
            raise ValueError(
                f"MiasConfig.sha256 must be 64 hexadecimal digits or empty, got {self.sha256!r}"
            )
        if not self.archive and not self.url:
            raise ValueError("MiasConfig: give an archive path or a url to download it from")


def _counts(rows: Sequence[MiasRow]) -> dict[str, Any]:
    """Image and lesion counts of a set of ``Info.txt`` rows."""
    worst: dict[str, str] = {}
    for row in rows:
        old = worst.get(row.ref, "NORMAL")
        worst[row.ref] = worst_of((old, row.pathology))
    lesions = [r for r in rows if r.abnormality_class != "NORM"]
    return {
        "images": len(worst),
        "images_by_pathology": dict(sorted(Counter(worst.values()).items())),
        "lesions": len(lesions),
        "lesions_with_coordinates": sum(r.has_coordinates for r in lesions),
        "lesions_without_coordinates": sum(not r.has_coordinates for r in lesions),
        "lesions_by_class": dict(sorted(Counter(r.abnormality_class for r in lesions).items())),
        "lesions_by_pathology": dict(sorted(Counter(r.pathology for r in lesions).items())),
    }


def _locate_archive(
    out_dir: Path, cfg: MiasConfig, download_dir: Path | None
) -> tuple[Path, str, bool]:
    """``(archive, url it came from or "", whether it is a scratch copy to delete)``."""
    if cfg.archive:
        archive = Path(cfg.archive)
        if not archive.exists():
            raise InputNotFound(
                f"mini-MIAS archive {archive} not found (MiasConfig.archive); give the path "
                f"of all-mias.tar.gz or leave it empty to download {cfg.url}"
            )
        return archive, "", False
    name = _archive_name(cfg.url)
    if download_dir is not None:
        dest = Path(download_dir) / "mias" / name
        return download_archive(cfg.url, dest, cfg.sha256), cfg.url, False
    scratch = out_dir / ".mias-download" / name
    return download_archive(cfg.url, scratch, cfg.sha256), cfg.url, True


@register_source("mias", MiasConfig, paths=("archive",), uses_download_dir=True)
def fetch_mias(
    out_dir: Path,
    cfg: MiasConfig,
    seed: int,
    workers: int = 0,
    download_dir: Path | None = None,
) -> dict[str, Any]:
    """Writes mini-MIAS into ``out_dir`` in the CBIS-DDSM layout.

    The formats and labels are described in :mod:`mammocad.sources.mias`.

    Writes ``csv/`` (mass, calc and normal case descriptions, train and test, each row
    naming ``dataset`` = ``mias``) and the ``MIAS/`` DICOM tree; ``source.json`` is left to
    the caller. Films that ``Info.txt`` lists but the archive lacks are reported in the
    summary, not fatal; unreadable PGMs are reported and skipped.

    Args:
        out_dir: the raw-data directory (created if absent; expected to be empty).
        cfg: archive location, checksum, ROI margin and test share.
        seed: non-negative seed of the patient-level train/test draw.
        workers: processes, ``0`` for every core; the output does not depend on it.
        download_dir: where a downloaded archive is kept between runs (an interrupted
            download resumes there); ``None`` downloads to a scratch folder in ``out_dir``
            that is removed afterwards.

    Returns:
        A summary: archive (its path, empty for a scratch download), url (empty for a local
        archive) and checksum; films listed, found, missing (count and names),
        corrupt (name → reason) and unlisted; patients per split; images, lesions with and
        without coordinates, by pathology and class (of the films written, and of all of
        ``Info.txt`` under ``listed``); series, DICOM files and CSV rows written.

    Raises:
        FileNotFoundError: when ``cfg.archive`` does not exist or the archive holds no
            ``Info.txt``.
        ValueError: for a bad seed, an archive that is not a (safe) tar, a checksum
            mismatch, or a malformed ``Info.txt`` line (naming its number).
        ConnectionError: when the download fails.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = [out_dir / ".mias-download", out_dir / ".mias-extract"]
    try:
        archive, url, scratch_copy = _locate_archive(out_dir, cfg, download_dir)
        digest = "" if archive.is_dir() else sha256_file(archive)
        expected = cfg.sha256.strip().lower()
        if expected and digest != expected:
            raise InputError(f"sha256 mismatch for {archive}: expected {expected}, got {digest}")
        if digest and not expected:
            log.info("sha256 of %s: %s (set MiasConfig.sha256 to check it)", archive, digest)
        files = (
            _index_folder(archive) if archive.is_dir() else extract_archive(archive, scratch[1])
        )
        if "info.txt" not in files:
            raise InputNotFound(f"no Info.txt in mini-MIAS archive {archive}")
        summary = _write_dataset(out_dir, cfg, seed, workers, files)
        summary = {
            "archive": "" if scratch_copy else str(archive),
            "url": url,
            "archive_sha256": digest,
            **summary,
        }
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    log.info(
        "mini-MIAS written to %s: %d of %d films (%d missing, %d corrupt), %d ROI series",
        out_dir,
        summary["images_written"],
        summary["images_listed"],
        summary["images_missing"],
        summary["images_corrupt"],
        summary["series_written"]["roi"],
    )
    return summary


def _write_dataset(
    out_dir: Path, cfg: MiasConfig, seed: int, workers: int, files: dict[str, Path]
) -> dict[str, Any]:
    """Parses ``Info.txt``, converts the films found and writes the case descriptions."""
    info = files["info.txt"]
    rows = parse_info(info.read_text(encoding="latin-1"))
    if not rows:
        raise InputError(f"{info.name}: no data rows (expected 'mdbNNN tissue class ...')")
    by_ref: dict[str, list[MiasRow]] = {}
    for row in rows:
        by_ref.setdefault(row.ref, []).append(row)
    for ref, ref_rows in by_ref.items():
        if len({r.tissue for r in ref_rows}) > 1:
            log.warning(
                "%s: Info.txt rows disagree on the tissue; using line %d's", ref, ref_rows[0].line
            )
    split = split_patients(rows, cfg.test_fraction, seed)
    listed_pgms = {f"{ref}.pgm" for ref in by_ref}
    unlisted = sorted(k[:-4] for k in files if k.endswith(".pgm") and k not in listed_pgms)
    if unlisted:
        log.warning(
            "%d PGM files not listed in Info.txt are ignored: %s", len(unlisted), unlisted[:10]
        )
    missing = sorted(ref for ref in by_ref if f"{ref}.pgm" not in files)
    if missing:
        log.warning(
            "%d of %d films listed in Info.txt are not in the archive (e.g. %s)",
            len(missing),
            len(by_ref),
            ", ".join(missing[:5]),
        )
    root = out_dir / "MIAS"
    tasks = [
        _FilmTask(
            ref=ref,
            pgm=files[f"{ref}.pgm"],
            rows=tuple(ref_rows),
            split=split[ref_rows[0].patient_number],
            root=root,
            roi_margin=float(cfg.roi_margin),
        )
        for ref, ref_rows in sorted(by_ref.items())
        if f"{ref}.pgm" in files
    ]
    csv_rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    counts: Counter = Counter()
    corrupt: dict[str, str] = {}
    written: list[MiasRow] = []
    for task, result in zip(
        tasks, imap(_convert_film, tasks, workers=workers, desc="mias", unit="film"), strict=True
    ):
        if result.error:
            log.warning("%s.pgm skipped: %s", result.ref, result.error)
            corrupt[result.ref] = result.error
            continue
        written.extend(task.rows)
        counts.update(result.counts)
        for key, film_rows in result.rows.items():
            csv_rows.setdefault(key, []).extend(film_rows)
    csv_counts = write_case_csvs(out_dir, csv_rows)

    done = _counts(written)
    patients = {
        task.rows[0].patient_number: task.split for task in tasks if task.ref not in corrupt
    }
    return {
        "images_listed": len(by_ref),
        "rows_listed": len(rows),
        "patients_listed": len(split),
        "images_found": len(tasks),
        "images_missing": len(missing),
        "missing_images": missing,
        "images_corrupt": len(corrupt),
        "corrupt_images": corrupt,
        "images_unlisted": unlisted,
        "images_written": done["images"],
        "patients": {s: sum(v == s for v in patients.values()) for s in SPLIT_PREFIX},
        "images_by_pathology": done["images_by_pathology"],
        "lesions": done["lesions"],
        "lesions_with_coordinates": done["lesions_with_coordinates"],
        "lesions_without_coordinates": done["lesions_without_coordinates"],
        "lesions_outside_image": counts["lesions_outside_image"],
        "lesions_by_class": done["lesions_by_class"],
        "lesions_by_pathology": done["lesions_by_pathology"],
        "series_written": {"full": counts["full_series"], "roi": counts["roi_series"]},
        "dicom_files": counts["dicom_files"],
        "csv_rows": csv_counts,
        "listed": _counts(rows),
        "roi_margin": cfg.roi_margin,
        "test_fraction": cfg.test_fraction,
    }
