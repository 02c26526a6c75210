"""CBIS-DDSM from a copy already on disk (an NBIA Data Retriever folder), and ``.tcia`` manifests.

Most people who work with CBIS-DDSM (paper §3.1) already hold it, downloaded with TCIA's
NBIA Data Retriever: ``<folder>/CBIS-DDSM/<Subject ID>/<study>/<series>/1-1.dcm …`` and,
in recent retriever versions, ``<folder>/metadata.csv``. With ``data.cbis_ddsm.root`` set,
the ``cbis-ddsm`` source reads that folder instead of the image API:

* **Index.** Every DICOM-like file below the root has its header read, never its pixel data
  (``stop_before_pixels``), on every core, with a progress line. Series are what the headers
  say (SeriesInstanceUID), never what folder names suggest; the retriever's
  ``metadata.csv`` is only checked against them. The headers are cached in
  ``<download_dir>/cbis-ddsm-root/index-<hash of the root>.json``, keyed by each file's
  path, size and modification time, so an unchanged folder is not read again and a changed
  one only where it changed (a journal beside it keeps the work of an interrupted run).
* **Join.** The case-description CSVs come from ``csv_dir``, else from the folder (the four
  official file names found anywhere below the root), else from ``csv_urls``. The series
  they name are looked up in the index.
* **Link.** ``data/raw`` gets the files of those series at their paths below the root: hard
  links, else symbolic links, else copies (the method is logged), except files carrying
  identifying fields, which are written as de-identified copies
  (:mod:`mammocad.deid`). Files under the root are never written to.
* **Accounting.** Series the CSVs name but the folder lacks are listed, with the reason,
  in ``data/raw/missing_series.csv`` (``convert`` quotes it, and the items they hold count
  toward ``convert.max_skipped_fraction``); unreadable files, second copies of one
  SOPInstanceUID and series the CSVs do not name are listed in
  ``data/raw/root_skipped.csv`` and counted in the summary. A file is never lost for a bad
  neighbour: of two files claiming one SOPInstanceUID the complete one is kept.

A root that does not exist, holds no DICOM file, or holds none of the series the CSVs name
(another collection) stops ``download`` with one line.

``.tcia`` manifests (:func:`~mammocad.sources.tcia.manifest.read_tcia_manifest`) list the
series an NBIA download fetches; with ``data.cbis_ddsm.manifest`` set, the API download
fetches exactly those.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom

from mammocad import cbis
from mammocad.convert import MISSING_SERIES
from mammocad.deid import deidentify, identifying_fields
from mammocad.dicom import SkipImage, read_header_dataset
from mammocad.errors import InputError, InputNotFound
from mammocad.io import atomic_file, write_csv
from mammocad.parallel import resolve_workers
from mammocad.paths import is_inside
from mammocad.progress import progress
from mammocad.sources.tcia.api import _Client
from mammocad.sources.tcia.case_csvs import _write_csvs
from mammocad.sources.tcia.config import CSV_NAMES, TciaConfig
from mammocad.sources.tcia.series import patient_number

log = logging.getLogger(__name__)

#: Bumped when the cached fields change; an index of another version is read afresh.
INDEX_VERSION = 1
#: The retriever's listing beside the collection folder.
METADATA_NAME = "metadata.csv"
#: Lists written into data/raw (``convert`` reads the first).
MISSING_NAME = MISSING_SERIES
SKIPPED_NAME = "root_skipped.csv"
MISSING_COLUMNS = ("series_uid", "subject", "role", "reason")
SKIPPED_COLUMNS = ("file", "series_uid", "reason")

UNKNOWN_SERIES = "SeriesInstanceUID not named by the case descriptions"
_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".dic"}
#: Files per task of the header-reading pool: large enough that IPC is cheap next to
#: opening the files, small enough that the progress line moves.
_BATCH = 32
_UNCOMPRESSED = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "",  # a bare dataset (no file meta): read as implicit VR, uncompressed
}


# --------------------------------------------------------------------------------------
# the header index


@dataclass(frozen=True)
class Entry:
    """One file below the root, as its header says (cached by path, size and mtime).

    Attributes:
        path: POSIX path relative to the root.
        size: bytes.
        mtime_ns: modification time.
        series_uid: SeriesInstanceUID; empty when unreadable.
        sop_uid: SOPInstanceUID.
        patient_id: PatientID (a check against the CSV subject; never written out).
        instance: InstanceNumber (0 when absent).
        pixel_bytes: uncompressed pixel bytes the header announces (0 when compressed).
        identifying: whether the header holds fields de-identification removes.
        reason: why the file cannot be used; empty when readable.
    """

    path: str
    size: int
    mtime_ns: int
    series_uid: str = ""
    sop_uid: str = ""
    patient_id: str = ""
    instance: int = 0
    pixel_bytes: int = 0
    identifying: bool = False
    reason: str = ""

    @property
    def complete(self) -> bool:
        """Whether the file is large enough for the pixel data its header announces."""
        return self.size >= self.pixel_bytes


def _read_entry(root: str, rel: str, size: int, mtime_ns: int) -> Entry:
    try:
        header, ds = read_header_dataset(os.path.join(root, rel))
        dirty = bool(identifying_fields(ds))
    except SkipImage as skip:
        return Entry(rel, size, mtime_ns, reason=skip.reason)
    except Exception as err:  # a header that breaks the checks is unusable
        return Entry(rel, size, mtime_ns, reason=f"unreadable DICOM header: {err}")
    uncompressed = header.transfer_syntax in _UNCOMPRESSED
    frames = max(1, header.number_of_frames)
    pixel_bytes = (
        header.rows * header.columns * header.samples_per_pixel * frames
        * max(header.bits_allocated, 8) // 8
        if uncompressed
        else 0
    )  # fmt: skip
    return Entry(
        rel,
        size,
        mtime_ns,
        series_uid=header.series_uid,
        sop_uid=header.sop_uid,
        patient_id=header.patient_id,
        instance=header.instance_number or 0,
        pixel_bytes=pixel_bytes,
        identifying=dirty,
    )


def _read_batch(task: tuple[str, list[tuple[str, int, int]]]) -> list[Entry]:
    root, files = task
    return [_read_entry(root, rel, size, mtime) for rel, size, mtime in files]


@dataclass
class Scan:
    """What a walk of the root found.

    Attributes:
        files: candidate DICOM files: relative path → (size, mtime_ns).
        csvs: official case-description file name → paths found below the root.
        metadata: retriever ``metadata.csv`` files found (at most two levels down).
        skipped: ``{"file", "series_uid", "reason"}`` rows (links leaving the root).
        others: files of other kinds (not counted as DICOM).
    """

    files: dict[str, tuple[int, int]]
    csvs: dict[str, list[Path]]
    metadata: list[Path]
    skipped: list[dict[str, str]]
    others: int = 0


def scan_root(root: Path, csv_names: Iterable[str], exclude: Path | None = None) -> Scan:
    """Walks ``root`` (hidden entries left out) for DICOM-like files and case-description CSVs.

    Args:
        root: the retriever folder (resolved).
        csv_names: the official case-description file names to look for.
        exclude: a folder below ``root`` not to enter (the download dir, if it lies there).
    """
    names = set(csv_names)
    scan = Scan(files={}, csvs={}, metadata=[], skipped=[])
    for here, dirs, files in os.walk(root):
        base = Path(here)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and not (exclude is not None and base / d == exclude)
        )
        depth = len(base.relative_to(root).parts)
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = base / name
            rel = path.relative_to(root).as_posix()
            if name in names:
                scan.csvs.setdefault(name, []).append(path)
                continue
            if name == METADATA_NAME and depth <= 2:
                scan.metadata.append(path)
                continue
            if path.suffix.lower() not in _DICOM_SUFFIXES:
                scan.others += 1
                continue
            if path.is_symlink() and not is_inside(root, path):
                # Data outside the folder the user named is not pulled into data/raw.
                scan.skipped.append(
                    {"file": rel, "series_uid": "", "reason": "symbolic link leaving the root"}
                )
                continue
            try:
                st = path.stat()
            except OSError as err:
                scan.skipped.append(
                    {"file": rel, "series_uid": "", "reason": f"cannot stat: {err.strerror}"}
                )
                continue
            scan.files[rel] = (st.st_size, st.st_mtime_ns)
    return scan


class HeaderIndex:
    """The cached headers of one root: ``index-<hash>.json`` plus a journal of new reads."""

    def __init__(self, cache_dir: Path, root: Path) -> None:
        key = hashlib.sha1(str(root).encode(), usedforsecurity=False).hexdigest()[:12]
        self.root = root
        self.path = cache_dir / f"index-{key}.json"
        self.journal = self.path.with_suffix(".journal")
        self.entries: dict[str, Entry] = {}
        self._load()

    def _load(self) -> None:
        records: list[dict[str, Any]] = []
        try:
            data = json.loads(self.path.read_text())
            if data.get("version") == INDEX_VERSION and data.get("root") == str(self.root):
                records = list(data["files"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s is unreadable (%s); headers are read again", self.path, err)
        with contextlib.suppress(FileNotFoundError), open(self.journal) as fh:
            for line in fh:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break  # the run stopped while writing this line
        for rec in records:
            with contextlib.suppress(TypeError):
                entry = Entry(**rec)
                self.entries[entry.path] = entry

    def lookup(self, rel: str, size: int, mtime_ns: int) -> Entry | None:
        """The cached entry of a file whose size and mtime are unchanged, else None."""
        entry = self.entries.get(rel)
        if entry is None or entry.size != size or entry.mtime_ns != mtime_ns:
            return None
        return entry

    @contextlib.contextmanager
    def recording(self) -> Iterator[Any]:
        """Yields ``add(entries)``, which journals new reads at once; saves on the way out."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal, "a") as fh:

            def add(entries: list[Entry]) -> None:
                for entry in entries:
                    self.entries[entry.path] = entry
                    fh.write(json.dumps(entry.__dict__) + "\n")
                fh.flush()

            yield add

    def save(self, keep: Iterable[str]) -> None:
        """Rewrites the index with the entries of ``keep`` (files still present)."""
        files = [self.entries[p].__dict__ for p in sorted(keep) if p in self.entries]
        with atomic_file(self.path) as fh:
            json.dump({"version": INDEX_VERSION, "root": str(self.root), "files": files}, fh)
        with contextlib.suppress(FileNotFoundError):
            self.journal.unlink()


def index_headers(
    root: Path, scan: Scan, cache_dir: Path, workers: int = 0
) -> tuple[dict[str, Entry], dict[str, int]]:
    """The header of every scanned file, from the cache where unchanged, else read.

    Returns:
        Entries by relative path, and counts ``headers_cached`` and ``headers_read``.
    """
    index = HeaderIndex(cache_dir, root)
    todo: list[tuple[str, int, int]] = []
    found: dict[str, Entry] = {}
    for rel, (size, mtime) in scan.files.items():
        entry = index.lookup(rel, size, mtime)
        if entry is None:
            todo.append((rel, size, mtime))
        else:
            found[rel] = entry
    counts = {"headers_cached": len(found), "headers_read": len(todo)}
    if todo:
        n = min(resolve_workers(workers), max(1, len(todo) // _BATCH))
        log.info(
            "reading %d DICOM headers (no pixel data) with %d processes; %d cached in %s",
            len(todo),
            n,
            len(found),
            index.path,
        )
        batches = [(str(root), todo[i : i + _BATCH]) for i in range(0, len(todo), _BATCH)]
        bar = progress(total=len(todo), desc="index DICOM headers", unit="file")
        try:
            with index.recording() as add:
                if n == 1:
                    results: Iterable[list[Entry]] = map(_read_batch, batches)
                    for entries in results:
                        add(entries)
                        bar.update(len(entries))
                else:
                    with mp.get_context("fork").Pool(n) as pool:
                        for entries in pool.imap_unordered(_read_batch, batches):
                            add(entries)
                            bar.update(len(entries))
        finally:
            bar.close()
        found.update({rel: index.entries[rel] for rel, _, _ in todo})
    index.save(scan.files)
    return found, counts


# --------------------------------------------------------------------------------------
# the retriever's metadata.csv


def read_metadata(paths: list[Path], root: Path) -> dict[str, dict[str, str]]:
    """Series UID → ``{"collection", "location"}`` from retriever ``metadata.csv`` files.

    ``location`` is the ``File Location`` column made relative to the root. Unreadable
    files are logged and left out: the headers are the truth, this is only a check.
    """
    out: dict[str, dict[str, str]] = {}
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (OSError, ValueError, UnicodeDecodeError) as err:
            log.warning("%s is unreadable (%s); not used", path, err)
            continue
        columns = {c.strip().lower(): c for c in frame.columns}
        uid_col = columns.get("series uid") or columns.get("seriesinstanceuid")
        if uid_col is None:
            log.warning("%s has no 'Series UID' column; not used", path)
            continue
        loc_col, coll_col = columns.get("file location"), columns.get("collection")
        for _, row in frame.iterrows():
            location = ""
            if loc_col:
                text = row[loc_col].strip().replace("\\", "/")
                with contextlib.suppress(ValueError):
                    location = (path.parent / text).resolve().relative_to(root).as_posix()
            out[row[uid_col].strip()] = {
                "collection": row[coll_col].strip() if coll_col else "",
                "location": location,
            }
    return out


# --------------------------------------------------------------------------------------
# joining and linking


def _subject(path: str) -> str:
    return path.replace("\\", "/").strip().split("/")[0]


def needed_series(table: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """SeriesInstanceUID → (subject, role) of every series the case descriptions name."""
    needed: dict[str, tuple[str, str]] = {}
    for role, uid_col, path_col in (
        ("full", "full_series_uid", "image_file_path"),
        ("crop", "crop_series_uid", "cropped_image_file_path"),
        ("mask", "mask_series_uid", "roi_mask_file_path"),
    ):
        for uid, path in zip(table[uid_col], table[path_col], strict=True):
            if uid and uid not in needed:
                needed[uid] = (_subject(path), role)
    return needed


def _pick(entries: list[Entry]) -> Entry:
    """Of files claiming one SOPInstanceUID, the complete one, then the larger, then the
    first by path: a truncated second copy must not replace a good file."""
    return min(entries, key=lambda e: (not e.complete, -e.size, e.path))


class Linker:
    """Puts files into data/raw: hard link, else symbolic link, else copy; cleaned copies
    for files with identifying fields. Remembers a method that failed so as not to retry
    it for every file (a hard link across file systems fails every time)."""

    METHODS = ("hardlink", "symlink", "copy")

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self._failed: set[str] = set()

    def install(self, src: Path, dst: Path, identifying: bool) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if identifying:
            ds = pydicom.dcmread(src)
            deidentify(ds)
            ds.save_as(dst, enforce_file_format=False)
            self.counts["deidentified_copy"] += 1
            return
        for method in self.METHODS:
            if method in self._failed:
                continue
            try:
                if method == "hardlink":
                    os.link(src, dst)
                elif method == "symlink":
                    os.symlink(src, dst)
                else:
                    shutil.copy2(src, dst)
            except OSError as err:
                if method == "copy":
                    raise
                log.info("%s not possible into data/raw (%s); trying the next way", method, err)
                self._failed.add(method)
                continue
            self.counts[method] += 1
            return


def _missing_reason(
    uid: str, metadata: dict[str, dict[str, str]], entries: dict[str, Entry]
) -> str:
    where = metadata.get(uid, {}).get("location", "")
    if not where:
        return "no file under the root has this SeriesInstanceUID"
    inside = [e for p, e in entries.items() if p == where or p.startswith(where + "/")]
    if not inside:
        return f"metadata.csv lists it at {where}, which holds no DICOM file (incomplete copy?)"
    bad = [e for e in inside if e.reason]
    if len(bad) == len(inside):
        return f"the files at {where} are unreadable: {bad[0].reason}"
    others = sorted({e.series_uid for e in inside if e.series_uid})
    return f"the files at {where} carry SeriesInstanceUID {', '.join(others[:2])}, not this one"


def link_series(
    out_dir: Path,
    root: Path,
    entries: dict[str, Entry],
    table: pd.DataFrame,
    metadata: dict[str, dict[str, str]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """Links the files of every series the case descriptions name into ``out_dir``.

    Writes ``missing_series.csv`` and ``root_skipped.csv`` (with ``skipped`` from the walk).

    Returns:
        The counts of the summary (see :func:`fetch_from_root`).

    Raises:
        InputError: if the root holds no readable DICOM file, or none of the named series.
    """
    skipped = list(skipped)
    unreadable = [e for e in entries.values() if e.reason]
    for e in unreadable:
        skipped.append({"file": e.path, "series_uid": "", "reason": e.reason})
    readable = [e for e in entries.values() if not e.reason]
    if not readable:
        example = f" (e.g. {unreadable[0].path}: {unreadable[0].reason})" if unreadable else ""
        raise InputError(
            f"data.cbis_ddsm.root {root} holds no readable DICOM file: {len(entries)} "
            f"candidate files{example}; point it at an NBIA Data Retriever download folder"
        )

    by_sop: dict[str, list[Entry]] = {}
    for e in readable:
        by_sop.setdefault(e.sop_uid or f"no-sop:{e.path}", []).append(e)
    kept: list[Entry] = []
    for group in by_sop.values():
        best = _pick(group)
        kept.append(best)
        for e in group:
            if e is not best:
                skipped.append(
                    {
                        "file": e.path,
                        "series_uid": e.series_uid,
                        "reason": f"duplicate SOPInstanceUID of {best.path} (kept: "
                        + ("complete, " if best.complete else "")
                        + f"{best.size} bytes against {e.size})",
                    }
                )
    series: dict[str, list[Entry]] = {}
    for e in kept:
        series.setdefault(e.series_uid, []).append(e)

    needed = needed_series(table)
    present = [uid for uid in needed if uid in series]
    extra = sorted(set(series) - set(needed))
    if not present:
        subjects = sorted({e.patient_id for e in readable if e.patient_id})[:3]
        collections = sorted({m["collection"] for m in metadata.values() if m["collection"]})
        raise InputError(
            f"none of the {len(series)} DICOM series under data.cbis_ddsm.root {root} is named "
            f"by the {len(needed)} series of the case descriptions (PatientIDs found: "
            f"{', '.join(subjects) or 'none'}"
            + (f"; metadata.csv collection: {', '.join(collections)}" if collections else "")
            + "): is it a CBIS-DDSM download?"
        )
    for uid in extra:
        for e in series[uid]:
            skipped.append({"file": e.path, "series_uid": uid, "reason": UNKNOWN_SERIES})

    linker = Linker()
    mismatched = 0
    files = sorted((e for uid in present for e in series[uid]), key=lambda e: e.path)
    bar = progress(total=sum(e.size for e in files), desc="link into data/raw", unit="B")
    try:
        for e in files:
            subject = needed[e.series_uid][0]
            # ROI subjects add "_<abnormality id>"; either is the file's own subject.
            if e.patient_id and not subject.startswith(e.patient_id):
                mismatched += 1
            linker.install(root / e.path, out_dir / e.path, e.identifying)
            bar.update(e.size)
    finally:
        bar.close()
    missing = [
        {
            "series_uid": uid,
            "subject": subject,
            "role": role,
            "reason": _missing_reason(uid, metadata, entries),
        }
        for uid, (subject, role) in needed.items()
        if uid not in series
    ]
    write_csv(out_dir / MISSING_NAME, pd.DataFrame(missing, columns=list(MISSING_COLUMNS)))
    write_csv(out_dir / SKIPPED_NAME, pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)))

    checked = disagree = 0
    for uid in present:
        where = metadata.get(uid, {}).get("location", "")
        if where:
            checked += 1
            disagree += any(not e.path.startswith(where + "/") for e in series[uid])
    kinds = Counter(
        "duplicate"
        if s["reason"].startswith("duplicate SOPInstanceUID")
        else "unknown_series"
        if s["reason"] == UNKNOWN_SERIES
        else "unreadable"
        for s in skipped
    )
    return {
        "series_needed": len(needed),
        "series_linked": len(present),
        "series_missing": len(missing),
        "series_missing_fraction": round(len(missing) / len(needed), 6),
        "series_extra": len(extra),
        "files_extra": kinds["unknown_series"],
        "files_unreadable": kinds["unreadable"],
        "files_duplicate": kinds["duplicate"],
        "files_linked": len(files),
        "bytes_linked": sum(e.size for e in files),
        "link_methods": dict(sorted(linker.counts.items())),
        "patient_id_mismatches": mismatched,
        "metadata_series_checked": checked,
        "metadata_disagreements": disagree,
    }


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


# --------------------------------------------------------------------------------------
# the source


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
