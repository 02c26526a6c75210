"""The walk of a retriever folder and its DICOM headers, read on every core and cached."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mammocad.deid import identifying_fields
from mammocad.dicom import SkipImage, read_header_dataset
from mammocad.io import atomic_file
from mammocad.parallel import resolve_workers
from mammocad.paths import is_inside
from mammocad.progress import progress
from mammocad.sources.retriever.metadata import METADATA_NAME

log = logging.getLogger(__name__)

#: Bumped when the cached fields change; an index of another version is read afresh.
INDEX_VERSION = 1
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
