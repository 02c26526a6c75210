"""The ``cbis-ddsm`` source: CBIS-DDSM downloaded from The Cancer Imaging Archive (TCIA).

CBIS-DDSM (Lee et al. 2017, Scientific Data 4:170177; CC BY 3.0) is the data set of the
paper's §3.1. TCIA serves its DICOM files through the NBIA image API, version 4, without
authentication: ``getSeries?Collection=CBIS-DDSM`` lists the collection's series as JSON,
``getImageWithMD5Hash?SeriesInstanceUID=…`` (or ``getImage?…&NewFileNames=Yes``) returns one
series as a ZIP of DICOM files. The four case-description CSVs are separate downloads.

The collection is about 164 GB in 6,775 series, so the client is built for long runs over
an unreliable link:

* Each series streams in chunks to ``.tcia/tmp/<uid>.zip.part`` (memory stays bounded), is
  renamed to ``<uid>.zip`` once its byte count matches ``Content-Length``, is extracted into
  a staging folder, verified, and only then renamed into
  ``CBIS-DDSM/<PatientID>/<study folder>/<series folder>/`` (NBIA retriever-like names;
  ``convert`` joins files by SeriesInstanceUID alone).
* Verification. The MD5 endpoint's ZIP holds, beside the DICOM files, ``md5hashes.csv``
  with the header ``Filename,MD5Hash`` and one ``<name in ZIP>,<32 hex digits>`` row per
  file, as NBIA's server writes it (and ``tcia_utils``/MONAI read it): every file must be
  listed and match. Without that list (a server without the MD5 endpoint, or a ZIP without
  the file) the number of files and their total size must equal ``getSeries``'
  ``ImageCount`` and ``FileSize``. The file count is checked in both cases.
* ZIP entries with absolute paths, drive letters, ``..`` components or symbolic links are
  refused (zip-slip): the series fails with the reason and nothing of it is installed.
* HTTP 5xx, 408 and 429, timeouts (connect or read idle), refused or dropped connections,
  short bodies, corrupt ZIPs and checksum or count mismatches are retried with capped
  exponential backoff; a series that still fails is reported and the run goes on.
* Resume. Every verified series is recorded, with its folder and file sizes, the moment
  it is installed: one fsynced line of ``.tcia/state.journal``, folded into
  ``.tcia/state.json`` (rewritten atomically) at the end of a run. A rerun skips those
  whose files are still in place, so a download stopped in any way (Ctrl-C, SIGTERM from
  a batch scheduler, even SIGKILL) picks up where it stopped; leftovers of unfinished
  series in ``.tcia/tmp`` are discarded. Nothing verified is ever deleted by a failure.
* Stopping. On SIGINT or SIGTERM (see :mod:`mammocad.errors`) the downloads stop within
  one chunk, the state is flushed and the temporary files are removed.
* Progress: a bar in bytes on a terminal, else a log line every
  ``MAMMOCAD_PROGRESS_S`` seconds with series and bytes done, rate and ETA.

``.tcia/`` is hidden, so ``convert`` does not read it.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from mammocad import __version__
from mammocad.errors import ExpectedError, InputNotFound
from mammocad.io import atomic_file, write_json
from mammocad.progress import progress
from mammocad.sources.tcia_manifest import read_tcia_manifest

try:  # advisory lock against two downloads into one folder (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: TCIA's NBIA image API, version 4 (no authentication for public collections).
NBIA_V4_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
#: The four official case-description files, in the names ``convert`` expects.
CSV_NAMES: tuple[str, ...] = (
    "mass_case_description_train_set.csv",
    "mass_case_description_test_set.csv",
    "calc_case_description_train_set.csv",
    "calc_case_description_test_set.csv",
)
#: Where TCIA's CBIS-DDSM collection page links the case descriptions. The retired wiki
#: page served the same files as
#: ``https://wiki.cancerimagingarchive.net/download/attachments/22516629/<name>?version=1&…``.
OFFICIAL_CSV_URLS: tuple[str, ...] = tuple(
    f"https://www.cancerimagingarchive.net/wp-content/uploads/{name}" for name in CSV_NAMES
)
#: The checksum list inside a ``getImageWithMD5Hash`` ZIP.
MD5_LIST_NAME = "md5hashes.csv"
#: Hidden working folder below ``out_dir``: state, cached CSVs, partial downloads.
WORK_DIR = ".tcia"
STATE_NAME = "state.json"

_CHUNK = 256 * 1024
#: HTTP statuses below 500 that are worth retrying.
_RETRY_STATUS = frozenset({408, 425, 429})
#: Answers to ``getImageWithMD5Hash`` that mean "this server has no such endpoint".
_NO_ENDPOINT_STATUS = frozenset({404, 405, 501})
_PATIENT = re.compile(r"P_(\d+)", re.IGNORECASE)
_PREFIX = {"mass": "mass-", "calc": "calc-"}
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9 ._()+,=-]")


class TciaError(ExpectedError, RuntimeError):
    """The download cannot go on: no series list, no case descriptions, nothing fetched."""


# --------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class TciaConfig:
    """The ``data.cbis_ddsm`` params section.

    Attributes:
        base_url: NBIA API root, ending in ``/`` (added if missing).
        collection: TCIA collection name.
        abnormality: ``all``, or only the ``mass`` or ``calc`` subjects (PatientID prefix
            ``Mass-``/``Calc-``); the case descriptions are cut to match.
        max_patients: ``0`` for every patient, else the first N patients by patient number
            (``P_00001`` …), each with all its full-image and ROI series, for a quick start.
        connections: parallel downloads.
        retries: further attempts per request after the first (HTTP 5xx/408/429, timeouts,
            dropped connections, corrupt ZIPs, checksum mismatches).
        timeout_s: per request: connecting, and waiting for the next bytes.
        csv_dir: folder holding the four case-description CSVs; empty to download them.
        csv_urls: the CSVs' URLs, one per official file name (the URL path's last part).
        md5: ask for ``getImageWithMD5Hash`` and verify every file's MD5; on a server that
            lacks the endpoint (HTTP 404/405/501) fall back to ``getImage``.
        backoff_s: first wait before a retry; it doubles with every attempt.
        backoff_max_s: longest wait between attempts.
        root: an existing NBIA Data Retriever download to read instead of the image API
            (see :mod:`mammocad.sources.retriever`); empty to download.
        manifest: a ``.tcia`` manifest; when set the API download fetches exactly the
            series it lists (see :mod:`mammocad.sources.tcia_manifest`).
    """

    base_url: str = NBIA_V4_URL
    collection: str = "CBIS-DDSM"
    abnormality: Literal["all", "mass", "calc"] = "all"
    max_patients: int = 0
    connections: int = 4
    retries: int = 5
    timeout_s: float = 60.0
    csv_dir: str = ""
    csv_urls: tuple[str, ...] = OFFICIAL_CSV_URLS
    md5: bool = True
    backoff_s: float = 2.0
    backoff_max_s: float = 120.0
    root: str = ""
    manifest: str = ""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"TciaConfig.base_url must be an http(s) URL, got {self.base_url!r}")
        if not self.base_url.endswith("/"):
            object.__setattr__(self, "base_url", self.base_url + "/")
        object.__setattr__(self, "csv_urls", tuple(self.csv_urls))
        if not self.collection:
            raise ValueError("TciaConfig.collection must not be empty")
        if self.abnormality not in ("all", "mass", "calc"):
            raise ValueError(
                f"TciaConfig.abnormality must be all, mass or calc, got {self.abnormality!r}"
            )
        for name, low in (("max_patients", 0), ("connections", 1), ("retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"TciaConfig.{name} must be an int >= {low}, got {value!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"TciaConfig.timeout_s must be > 0, got {self.timeout_s!r}")
        if self.backoff_s < 0 or self.backoff_max_s < 0:
            raise ValueError("TciaConfig.backoff_s and backoff_max_s must be >= 0")
        if self.manifest and self.root:
            raise ValueError(
                "TciaConfig.manifest selects series to download and root reads a copy on "
                "disk: set one of them"
            )
        if self.manifest and (self.abnormality != "all" or self.max_patients):
            raise ValueError(
                "TciaConfig.manifest lists exactly the series to fetch: leave abnormality "
                "(all) and max_patients (0) at their defaults"
            )
        if not self.csv_dir:
            names = {_url_name(u) for u in self.csv_urls}
            for name in CSV_NAMES:
                if name not in names:
                    raise ValueError(
                        f"TciaConfig.csv_urls has no URL for {name} (the file name is the "
                        f"URL path's last part); got {list(self.csv_urls)}"
                    )


def _url_name(url: str) -> str:
    return PurePosixPath(urllib.parse.urlsplit(url).path).name


# --------------------------------------------------------------------------------------
# the series list


@dataclass(frozen=True)
class SeriesInfo:
    """One series of ``getSeries``, with the folder it is installed in.

    Attributes:
        uid: SeriesInstanceUID.
        patient_id: the subject (``Mass-Training_P_00001_LEFT_CC``, ROI series ``…_1``).
        image_count: ``ImageCount``, or None where the server did not say.
        file_size: ``FileSize`` in bytes (all files of the series), or None.
        folder: install folder relative to ``out_dir`` (POSIX separators).
    """

    uid: str
    patient_id: str
    image_count: int | None
    file_size: int | None
    folder: str


def patient_number(patient_id: str) -> int | None:
    """The patient number of a CBIS-DDSM subject, e.g. ``Calc-Test_P_00038_LEFT_CC_1`` → 38."""
    m = _PATIENT.search(patient_id)
    return int(m.group(1)) if m else None


def select_series(
    records: Iterable[dict[str, Any]], abnormality: str = "all", max_patients: int = 0
) -> list[dict[str, Any]]:
    """Picks the ``getSeries`` records of the wanted abnormality type and patients.

    Args:
        records: ``getSeries`` JSON objects (``SeriesInstanceUID``, ``PatientID``, …).
        abnormality: ``all``, ``mass`` (PatientID ``Mass-…``) or ``calc`` (``Calc-…``).
        max_patients: ``0`` for all, else the N lowest patient numbers among the series of
            that type; a patient's full-image and ROI series (``…_1``, ``…_2``) all count
            as one patient, and the same number in mass and calc subjects is one patient.

    Returns:
        The chosen records, sorted by SeriesInstanceUID, duplicates dropped.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for rec in records:
        subject = str(rec.get("PatientID", ""))
        if abnormality != "all" and not subject.lower().startswith(_PREFIX[abnormality]):
            continue
        chosen.setdefault(str(rec["SeriesInstanceUID"]), rec)
    if max_patients:
        numbers = {patient_number(str(r.get("PatientID", ""))) for r in chosen.values()}
        unnumbered = sum(
            1 for r in chosen.values() if patient_number(str(r.get("PatientID", ""))) is None
        )
        if unnumbered:
            log.warning("%d series have no P_nnnnn patient number; left out", unnumbered)
        keep = set(sorted(n for n in numbers if n is not None)[:max_patients])
        chosen = {
            uid: r
            for uid, r in chosen.items()
            if patient_number(str(r.get("PatientID", ""))) in keep
        }
    return [chosen[uid] for uid in sorted(chosen)]


def _safe_component(text: str, fallback: str) -> str:
    """A path component from server text: no separators, no ``..``, bounded length."""
    clean = _UNSAFE_CHARS.sub("_", text).strip(" .")[:120]
    return clean if clean and clean not in (".", "..") else fallback


def _study_folder(rec: dict[str, Any]) -> str:
    """NBIA retriever-like study folder, e.g. ``08-07-2016-DDSM-74994``."""
    uid = str(rec.get("StudyInstanceUID", "") or "")
    date = re.search(r"(\d{4})-?(\d{2})-?(\d{2})", str(rec.get("StudyDate", "") or ""))
    parts = [f"{date[2]}-{date[3]}-{date[1]}"] if date else []
    parts.append(str(rec.get("StudyDescription") or rec.get("StudyDesc") or "DDSM"))
    parts.append(uid[-5:] if uid else "NA")
    return _safe_component("-".join(parts), "study")


def _series_folder(rec: dict[str, Any]) -> str:
    """NBIA retriever-like series folder, e.g. ``1.000000-full mammogram images-24515``."""
    try:
        number = f"{float(rec.get('SeriesNumber', 1)):.6f}"
    except (TypeError, ValueError):
        number = "1.000000"
    description = str(rec.get("SeriesDescription", "") or "series")
    uid = str(rec["SeriesInstanceUID"])
    return _safe_component(f"{number}-{description}-{uid[-5:]}", uid)


def _to_int(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def plan_series(records: Iterable[dict[str, Any]], collection: str) -> list[SeriesInfo]:
    """Assigns each chosen series its install folder below ``out_dir``.

    Folders follow the NBIA retriever
    (``<collection>/<PatientID>/<study folder>/<series folder>``); two series that would
    share one get the full SeriesInstanceUID appended.
    """
    out: list[SeriesInfo] = []
    used: set[str] = set()
    root = _safe_component(collection, "collection")
    for rec in records:
        uid = str(rec["SeriesInstanceUID"])
        subject = _safe_component(str(rec.get("PatientID", "")), "unknown-subject")
        folder = f"{root}/{subject}/{_study_folder(rec)}/{_series_folder(rec)}"
        if folder in used:
            folder = f"{folder}-{_safe_component(uid, 'series')}"
        used.add(folder)
        out.append(
            SeriesInfo(
                uid=uid,
                patient_id=str(rec.get("PatientID", "")),
                image_count=_to_int(rec.get("ImageCount")),
                file_size=_to_int(rec.get("FileSize")),
                folder=folder,
            )
        )
    return out


# --------------------------------------------------------------------------------------
# HTTP


class _Retry(Exception):
    """A transient failure: worth another attempt."""


class _Refuse(Exception):
    """A failure another attempt will not cure (unsafe ZIP, HTTP 4xx)."""


class _Cancelled(Exception):
    """The run is stopping (another thread raised, or Ctrl-C)."""


class _HttpStatus(Exception):
    def __init__(self, code: int, url: str, reason: str) -> None:
        super().__init__(f"HTTP {code} {reason} from {url}")
        self.code = code

    @property
    def transient(self) -> bool:
        return self.code >= 500 or self.code in _RETRY_STATUS


#: Errors of the network (never of local files): connecting, TLS, reading the body.
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    request = urllib.request.Request(
        url, headers={"User-Agent": f"mammocad/{__version__}", "Accept": "*/*"}
    )
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as err:
        err.close()
        raise _HttpStatus(err.code, url, str(err.reason)) from None
    except _NETWORK_ERRORS as err:
        raise _Retry(f"{_describe(err)} ({url})") from None


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        err = err.reason if isinstance(err.reason, BaseException) else err
    if isinstance(err, TimeoutError):
        return "timed out"
    return f"{type(err).__name__}: {err}"


def _stream(
    response: http.client.HTTPResponse,
    url: str,
    write: Callable[[bytes], Any],
    stop: threading.Event | None = None,
) -> int:
    """Copies a response body chunk by chunk; checks the byte count against Content-Length.

    http.client returns a short body without complaint when the server closes early, so
    the count is checked here.
    """
    header = response.headers.get("Content-Length", "")
    expected = int(header) if header.strip().isdigit() else None
    n = 0
    while True:
        if stop is not None and stop.is_set():
            raise _Cancelled
        try:
            chunk = response.read(_CHUNK)
        except _NETWORK_ERRORS as err:
            raise _Retry(f"{_describe(err)} after {n} bytes ({url})") from None
        if not chunk:
            break
        write(chunk)
        n += len(chunk)
    if expected is not None and n != expected:
        raise _Retry(f"connection closed after {n} of {expected} bytes ({url})")
    return n


# --------------------------------------------------------------------------------------
# ZIP extraction and verification


def parse_md5_list(text: str) -> dict[str, str]:
    """Reads NBIA's ``md5hashes.csv``: ``Filename,MD5Hash`` then ``<name>,<hex>`` rows.

    The header is optional and may name the columns in another order; digests are
    compared in lower case.

    Raises:
        ValueError: for a row without a 32-digit hex digest.
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    name_col, hash_col = 0, 1
    if rows and not _MD5_HEX.match(rows[0][-1].strip().lower()):
        header = [c.strip().lower() for c in rows.pop(0)]
        name_col = next((i for i, c in enumerate(header) if "file" in c), 0)
        hash_col = next((i for i, c in enumerate(header) if "md5" in c or "hash" in c), 1)
    hashes: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        if len(row) <= max(name_col, hash_col):
            raise ValueError(f"{MD5_LIST_NAME} row {number}: expected 2 columns, got {row}")
        digest = row[hash_col].strip().lower()
        if not _MD5_HEX.match(digest):
            raise ValueError(f"{MD5_LIST_NAME} row {number}: not an MD5 digest: {digest!r}")
        hashes[row[name_col].strip().replace("\\", "/")] = digest
    return hashes


def member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path of a ZIP entry as components, refusing anything that could leave the target.

    Raises:
        ValueError: for symbolic links, absolute paths, drive letters, ``..`` components,
            NUL bytes or an empty name (zip-slip).
    """
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ValueError(f"unsafe ZIP entry {name!r}: symbolic link")
    if "\x00" in name:
        raise ValueError(f"unsafe ZIP entry {name!r}: NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise ValueError(f"unsafe ZIP entry {name!r}: absolute path")
    parts = tuple(p for p in norm.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError(f"unsafe ZIP entry {name!r}: '..' leaves the series folder")
    if not parts and not norm.endswith("/"):
        raise ValueError(f"unsafe ZIP entry {name!r}: empty name")
    return parts


@dataclass
class _Extracted:
    files: dict[str, int]  # relative POSIX path -> bytes
    md5_checked: bool


def extract_series(
    archive: Path, dest: Path, series: SeriesInfo, expect_md5: bool = True
) -> dict[str, int]:
    """Extracts one series ZIP into ``dest`` (created, must not exist) and verifies it.

    Returns:
        Extracted files: relative POSIX path → size in bytes.

    Raises:
        ValueError: for an unsafe entry (zip-slip) or a duplicate name; nothing is kept.
        RuntimeError: for a corrupt or truncated ZIP, a checksum, count or size mismatch.
    """
    try:
        return _extract(archive, dest, series, expect_md5).files
    except _Refuse as err:
        raise ValueError(str(err)) from None
    except _Retry as err:
        raise RuntimeError(str(err)) from None


def _extract(archive: Path, dest: Path, series: SeriesInfo, expect_md5: bool) -> _Extracted:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            paths: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
            for info in infos:
                try:
                    paths.append((info, member_parts(info)))
                except ValueError as err:
                    raise _Refuse(str(err)) from None
            listing = [i for i, p in paths if len(p) == 1 and p[0].lower() == MD5_LIST_NAME]
            data = [(i, p) for i, p in paths if not i.is_dir() and i not in listing]
            declared = sum(i.file_size for i, _ in data)
            if series.file_size and declared > max(2 * series.file_size, series.file_size + 2**26):
                raise _Refuse(
                    f"ZIP declares {declared} bytes, far more than FileSize={series.file_size}"
                )
            hashes = None
            if listing:
                try:
                    hashes = parse_md5_list(zf.read(listing[0]).decode("utf-8-sig"))
                except (ValueError, UnicodeDecodeError) as err:
                    raise _Retry(f"unreadable {MD5_LIST_NAME}: {err}") from None
            dest.mkdir(parents=True)
            root = dest.resolve()
            files: dict[str, int] = {}
            digests: dict[str, str] = {}
            for info, parts in data:
                target = dest.joinpath(*parts)
                if not target.resolve().is_relative_to(root):  # defence in depth
                    raise _Refuse(f"unsafe ZIP entry {info.filename!r}: leaves the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.md5(usedforsecurity=False)
                size = 0
                try:
                    with zf.open(info) as src, open(target, "xb") as dst:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            dst.write(chunk)
                            size += len(chunk)
                except FileExistsError:
                    raise _Refuse(f"duplicate ZIP entry {info.filename!r}") from None
                key = "/".join(parts)
                files[key] = size
                digests[key] = digest.hexdigest()
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise _Retry(f"corrupt or truncated ZIP: {err}") from None
    except NotImplementedError as err:  # an unsupported compression method
        raise _Refuse(f"unreadable ZIP: {err}") from None

    if not files:
        raise _Retry("the ZIP holds no files")
    if hashes is not None:
        unlisted = sorted(set(files) - set(hashes))
        if unlisted:
            raise _Retry(f"{len(unlisted)} files missing from {MD5_LIST_NAME}, e.g. {unlisted[0]}")
        absent = sorted(set(hashes) - set(files))
        if absent:
            raise _Retry(f"{MD5_LIST_NAME} lists {len(absent)} files not in the ZIP: {absent[0]}")
        for name in sorted(files):
            if digests[name] != hashes[name]:
                raise _Retry(
                    f"MD5 mismatch for {name}: expected {hashes[name]}, got {digests[name]}"
                )
    elif expect_md5:
        log.debug("%s: no %s in the ZIP; checking count and size", series.uid, MD5_LIST_NAME)
    if series.image_count is not None and len(files) != series.image_count:
        raise _Retry(f"the ZIP holds {len(files)} files, getSeries says {series.image_count}")
    total = sum(files.values())
    if hashes is None and series.file_size is not None and total != series.file_size:
        raise _Retry(f"the files hold {total} bytes, getSeries says FileSize={series.file_size}")
    return _Extracted(files=files, md5_checked=hashes is not None)


# --------------------------------------------------------------------------------------
# state


class _State:
    """Verified series, kept in ``.tcia/state.json`` plus an append-only journal.

    Every verified series is appended at once to ``state.journal`` as one JSON line
    (written with a single ``write`` and fsynced), so a run killed at any moment, even by
    SIGKILL, leaves every series it finished on record; a torn last line is ignored.
    ``state.json`` (rewritten atomically) is the compacted form: loading merges both,
    :meth:`flush` folds the journal into it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal = path.with_suffix(".journal")
        self.lock = threading.Lock()
        self.series: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.series = dict(data["series"])
            except (ValueError, KeyError, TypeError) as err:
                # Written atomically, so this means a hand edit; series are then fetched
                # again and their folders replaced by verified copies.
                log.warning("%s is unreadable (%s); starting a fresh state", path, err)
        if self.journal.is_file():
            with open(self.journal, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                        self.series[str(entry["uid"])] = dict(entry["record"])
                    except (ValueError, KeyError, TypeError):
                        break  # the run stopped while writing this line
        self._fh: Any = None

    def verified(self, uid: str, out_dir: Path) -> str | None:
        """The folder of a recorded series whose files are all still there, else None."""
        rec = self.series.get(uid)
        if rec is None:
            return None
        folder = out_dir / rec["folder"]
        for name, size in rec["files"].items():
            try:
                if (folder / name).stat().st_size != size:
                    raise FileNotFoundError
            except OSError:
                log.warning("%s: %s changed or vanished; fetching the series again", uid, name)
                return None
        return rec["folder"]

    def add(self, uid: str, record: dict[str, Any]) -> None:
        """Records a verified series durably before returning."""
        line = (json.dumps({"uid": uid, "record": record}, sort_keys=True) + "\n").encode()
        with self.lock:
            self.series[uid] = record
            if self._fh is None:
                self._fh = open(self.journal, "ab")  # noqa: SIM115 - kept open for the run
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def flush(self) -> None:
        """Folds the journal into ``state.json`` (atomically) and empties it."""
        with self.lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            if self.series or self.path.exists():
                write_json(self.path, {"version": 1, "series": self.series})
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()


@contextlib.contextmanager
def _exclusive(work: Path) -> Iterator[None]:
    """Holds ``.tcia/lock`` so that two downloads never share one folder."""
    work.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(work / "lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise TciaError(f"another download is writing into {work.parent}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# the client


@dataclass
class _Outcome:
    series: SeriesInfo
    files: dict[str, int] = field(default_factory=dict)
    md5_checked: bool = False
    nbytes: int = 0
    attempts: int = 0
    error: str = ""


class _Client:
    def __init__(self, cfg: TciaConfig) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.md5 = cfg.md5
        self._lock = threading.Lock()
        self._bar: Any = None

    # -- plumbing

    def _sleep(self, attempt: int) -> None:
        delay = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2 ** (attempt - 1))
        if self.stop.wait(delay):
            raise _Cancelled

    def _progress(self, n: int) -> None:
        if self._bar is not None and n:
            with self._lock:
                self._bar.update(n)

    def get_bytes(self, url: str, what: str) -> bytes:
        """A small response body, with retries; TciaError naming the URL when it fails."""
        attempts = self.cfg.retries + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                self._sleep(attempt)
            buf = io.BytesIO()
            try:
                with _open(url, self.cfg.timeout_s) as response:
                    _stream(response, url, buf.write)
                return buf.getvalue()
            except _HttpStatus as err:
                if not err.transient:
                    raise TciaError(f"{what}: {err}") from None
                last = str(err)
            except _Retry as err:
                last = str(err)
            log.warning("%s: attempt %d of %d failed: %s", what, attempt + 1, attempts, last)
        raise TciaError(f"{what}: gave up after {attempts} attempts; last error: {last}")

    # -- the series list

    def list_series(self) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"Collection": self.cfg.collection})
        url = f"{self.cfg.base_url}getSeries?{query}"
        body = self.get_bytes(url, "series list")
        try:
            records = json.loads(body.decode("utf-8-sig")) if body.strip() else []
        except (ValueError, UnicodeDecodeError) as err:
            raise TciaError(f"{url} did not return JSON ({err}): {body[:200]!r}") from None
        if not isinstance(records, list) or not records:
            raise TciaError(
                f"{url} returned no series for collection {self.cfg.collection!r} "
                f"({body[:200]!r}); the API may be down or the collection renamed"
            )
        bad = [r for r in records if not (isinstance(r, dict) and r.get("SeriesInstanceUID"))]
        if bad:
            raise TciaError(f"{url}: {len(bad)} entries lack SeriesInstanceUID, e.g. {bad[0]!r}")
        return records

    # -- one series

    def series_url(self, uid: str, md5: bool) -> str:
        if md5:
            query = urllib.parse.urlencode({"SeriesInstanceUID": uid})
            return f"{self.cfg.base_url}getImageWithMD5Hash?{query}"
        query = urllib.parse.urlencode({"SeriesInstanceUID": uid, "NewFileNames": "Yes"})
        return f"{self.cfg.base_url}getImage?{query}"

    def fetch_series(self, series: SeriesInfo, out_dir: Path, tmp: Path) -> _Outcome:
        """Downloads, verifies and installs one series; a failure is returned, not raised."""
        stem = _safe_component(series.uid, "series")
        part = tmp / f"{stem}.zip.part"
        archive = tmp / f"{stem}.zip"
        staging = tmp / f"{stem}.d"
        attempts = self.cfg.retries + 1
        outcome = _Outcome(series)
        last = ""
        attempt = 0
        while attempt < attempts:
            if attempt:
                self._sleep(attempt)
            md5 = self.md5
            url = self.series_url(series.uid, md5)
            got = [0]
            outcome.attempts += 1
            try:
                self._download_to(url, part, got)
                os.replace(part, archive)
                extracted = _extract(archive, staging, series, md5)
                self._install(staging, out_dir / series.folder, tmp)
                # Count each series as its FileSize, so the bar ends at its total.
                self._progress((series.file_size or got[0]) - got[0])
                outcome.files = extracted.files
                outcome.md5_checked = extracted.md5_checked
                outcome.nbytes = got[0]
                return outcome
            except _HttpStatus as err:
                if md5 and err.code in _NO_ENDPOINT_STATUS:
                    self._no_md5(err)
                    outcome.attempts -= 1
                    self._progress(-got[0])
                    continue
                if not err.transient:
                    self._progress(-got[0])
                    outcome.error = str(err)
                    return outcome
                last = str(err)
            except _Retry as err:
                last = str(err)
            except _Refuse as err:
                self._progress(-got[0])
                outcome.error = str(err)
                return outcome
            finally:
                for path in (part, archive):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                shutil.rmtree(staging, ignore_errors=True)
            self._progress(-got[0])
            attempt += 1
            log.warning(
                "series %s (%s): attempt %d of %d failed: %s",
                series.uid,
                series.patient_id,
                attempt,
                attempts,
                last,
            )
        outcome.error = f"gave up after {attempts} attempts; last error: {last}"
        return outcome

    def _download_to(self, url: str, part: Path, got: list[int]) -> None:
        """Streams ``url`` into ``part``, counting bytes in ``got[0]`` as they arrive."""

        with open(part, "wb") as fh:

            def write(chunk: bytes) -> None:
                fh.write(chunk)
                got[0] += len(chunk)
                self._progress(len(chunk))

            with _open(url, self.cfg.timeout_s) as response:
                _stream(response, url, write, self.stop)

    def _no_md5(self, err: _HttpStatus) -> None:
        with self._lock:
            if self.md5:
                log.warning(
                    "getImageWithMD5Hash is not available (%s); downloading with getImage and "
                    "checking file counts and sizes instead of MD5 sums",
                    err,
                )
                self.md5 = False

    @staticmethod
    def _install(staging: Path, final: Path, tmp: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Not in the state, so never verified: a copy from a run that stopped between
            # installing and recording, or one put there by hand. Replace it.
            old = tmp / f"{final.name}.old-{threading.get_ident()}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(staging, final)

    # -- the case descriptions

    def case_csvs(self, work: Path) -> dict[str, Path]:
        """The four case-description files: from ``csv_dir``, or downloaded (cached)."""
        if self.cfg.csv_dir:
            return {name: Path(self.cfg.csv_dir) / name for name in CSV_NAMES}
        urls = {_url_name(u): u for u in self.cfg.csv_urls}
        out = {}
        for name in CSV_NAMES:
            url = urls[name]
            # Cached per URL, so a changed URL is downloaded again.
            key = hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:12]
            path = work / "csv" / f"{key}-{name}"
            if not path.is_file():
                body = self.get_bytes(url, f"case descriptions {name}")
                _check_csv_header(body[:4096], url)
                with atomic_file(path, "wb") as fh:
                    fh.write(body)
            out[name] = path
        return out


def _check_csv_header(head: bytes, where: str) -> None:
    first = head.decode("utf-8-sig", errors="replace").splitlines()[:1]
    line = first[0].lower() if first else ""
    if "patient_id" not in line or "image file path" not in line:
        raise TciaError(
            f"{where} is not a CBIS-DDSM case-description CSV (first line: {line[:120]!r})"
        )


def _write_csvs(
    sources: dict[str, Path],
    csv_out: Path,
    abnormality: str,
    patients: set[int] | None,
    series: set[str] | None = None,
) -> dict[str, int]:
    """Writes the case descriptions, cut to the chosen abnormality type and patients.

    With no filter the files are copied byte for byte; else rows are kept whole (quotes,
    embedded newlines and stray spaces included). ``series`` (a manifest's) keeps the rows
    whose full-image series it lists.
    """
    counts: dict[str, int] = {}
    for name, src in sources.items():
        with open(src, "rb") as fh:
            _check_csv_header(fh.read(4096), str(src))
        kind = name.split("_", 1)[0]
        with open(src, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
        header, body = rows[0], rows[1:]
        if abnormality == "all" and patients is None and series is None:
            with open(src, "rb") as fin, atomic_file(csv_out / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            counts[name] = len(body)
            continue
        names = [c.strip().lower() for c in header]
        column = names.index("patient_id")
        image = names.index("image file path") if "image file path" in names else -1
        keep = [
            row
            for row in body
            if abnormality in ("all", kind)
            and (
                patients is None or (len(row) > column and patient_number(row[column]) in patients)
            )
            and (series is None or (len(row) > image >= 0 and _image_series(row[image]) in series))
        ]
        with atomic_file(csv_out / name, "w") as fout:
            writer = csv.writer(fout, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(keep)
        counts[name] = len(keep)
    return counts


def _image_series(path: str) -> str:
    """The SeriesInstanceUID of a case-description path (its third component)."""
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p]
    return parts[2] if len(parts) > 2 else ""


# --------------------------------------------------------------------------------------
# the source


def fetch_cbis_ddsm(
    out_dir: Path, cfg: TciaConfig, seed: int = 0, workers: int = 0
) -> dict[str, Any]:
    """Downloads CBIS-DDSM from TCIA into ``out_dir`` in the CBIS-DDSM raw layout (§3.1).

    Writes ``csv/`` (the four case descriptions, cut to the chosen series when
    ``abnormality`` or ``max_patients`` narrow the choice) and
    ``<collection>/<PatientID>/<study>/<series>/`` DICOM folders; ``.tcia/`` holds the
    resume state. Rerunning on the same ``out_dir`` fetches only what is missing. Nothing
    is created when the series list cannot be had. With ``cfg.manifest`` exactly the
    manifest's series are fetched (those the collection lacks are reported as failed) and
    the case descriptions are cut to the rows whose full image it lists.

    Args:
        out_dir: the raw-data folder; keep it between runs to resume.
        cfg: API, selection, retry and parallelism settings.
        seed: unused (the download is deterministic); part of the source signature.
        workers: unused; ``cfg.connections`` threads download in parallel.

    Returns:
        A summary: ``series_expected``, ``series_fetched`` (this run), ``series_present``
        (verified earlier), ``series_verified`` (both), ``series_md5_checked``,
        ``series_failed`` and ``failed`` (``series_uid``, ``patient_id``, ``reason`` each),
        ``patients``, ``files``, ``bytes_expected`` (FileSize of the chosen series),
        ``bytes_downloaded`` (ZIP bytes of the series fetched), ``csv_rows``.

    Raises:
        FileNotFoundError: if ``csv_dir`` lacks one of the four files (named).
        TciaError: if the series list is empty or unobtainable (naming the URL), no series
            matches the selection, a CSV cannot be downloaded, or no series could be had.
    """
    del seed, workers
    out_dir = Path(out_dir)
    if cfg.csv_dir:
        for name in CSV_NAMES:
            if not (Path(cfg.csv_dir) / name).is_file():
                raise InputNotFound(
                    f"csv_dir {cfg.csv_dir} lacks {name} (it must hold the four CBIS-DDSM "
                    f"case-description files: {', '.join(CSV_NAMES)})"
                )
    client = _Client(cfg)
    records = client.list_series()
    listed: list[str] = []
    if cfg.manifest:
        listed = read_tcia_manifest(cfg.manifest)
        wanted = set(listed)
        records = [r for r in records if str(r["SeriesInstanceUID"]) in wanted]
        if not records:
            raise TciaError(
                f"none of the {len(listed)} series of {cfg.manifest} is in collection "
                f"{cfg.collection} at {cfg.base_url}: is it a manifest of this collection?"
            )
    chosen = select_series(records, cfg.abnormality, cfg.max_patients)
    if not chosen:
        raise TciaError(
            f"none of the {len(records)} series of {cfg.collection} match "
            f"abnormality={cfg.abnormality!r} (PatientID prefix Mass-/Calc-)"
        )
    series = plan_series(chosen, cfg.collection)
    numbers = {patient_number(s.patient_id) for s in series}
    filtered = cfg.abnormality != "all" or cfg.max_patients > 0 or bool(cfg.manifest)
    unlisted = sorted(set(listed) - {s.uid for s in series})
    if unlisted:
        log.warning(
            "%d of the %d series of %s are not in the collection's series list (e.g. %s); "
            "they are reported as failed",
            len(unlisted),
            len(listed),
            cfg.manifest,
            unlisted[0],
        )
    log.info(
        "%s: %d of %d series chosen (%d patients, abnormality=%s, max_patients=%d)",
        cfg.collection,
        len(series),
        len(records),
        len(numbers),
        cfg.abnormality,
        cfg.max_patients,
    )

    work = out_dir / WORK_DIR
    with _exclusive(work):
        sources = client.case_csvs(work)
        patients = {n for n in numbers if n is not None} if cfg.max_patients else None
        csv_rows = _write_csvs(
            sources,
            out_dir / "csv",
            cfg.abnormality,
            patients,
            {s.uid for s in series} if cfg.manifest else None,
        )
        if filtered:
            log.info("case descriptions cut to the chosen series: %s", csv_rows)
        state = _State(work / STATE_NAME)
        outcomes, present = _download(client, series, out_dir, work, state)

    fetched = [o for o in outcomes if not o.error]
    failed = [o for o in outcomes if o.error] + [
        _Outcome(
            SeriesInfo(uid, "", None, None, ""),
            error=f"listed in {cfg.manifest} but not in the series list of {cfg.collection}",
        )
        for uid in unlisted
    ]
    summary: dict[str, Any] = {
        "collection": cfg.collection,
        "base_url": cfg.base_url,
        "abnormality": cfg.abnormality,
        "max_patients": cfg.max_patients,
        "manifest": cfg.manifest,
        "manifest_series": len(listed),
        "patients": len(numbers),
        "series_expected": len(series) + len(unlisted),
        "series_fetched": len(fetched),
        "series_present": len(present),
        "series_verified": len(fetched) + len(present),
        "series_md5_checked": sum(o.md5_checked for o in fetched),
        "series_failed": len(failed),
        "failed": [
            {"series_uid": o.series.uid, "patient_id": o.series.patient_id, "reason": o.error}
            for o in sorted(failed, key=lambda o: o.series.uid)
        ],
        "files": sum(len(o.files) for o in fetched)
        + sum(len(state.series[s.uid]["files"]) for s in present),
        "bytes_expected": sum(s.file_size or 0 for s in series),
        "bytes_downloaded": sum(o.nbytes for o in fetched),
        "csv_rows": csv_rows,
    }
    log.info(
        "%s: %d series expected, %d fetched, %d already present, %d verified (%d by MD5), "
        "%d failed; %d bytes downloaded",
        cfg.collection,
        summary["series_expected"],
        summary["series_fetched"],
        summary["series_present"],
        summary["series_verified"],
        summary["series_md5_checked"],
        summary["series_failed"],
        summary["bytes_downloaded"],
    )
    for o in failed:
        log.warning("series %s (%s) failed: %s", o.series.uid, o.series.patient_id, o.error)
    if summary["series_verified"] == 0:
        reasons = "; ".join(f"{o.series.uid}: {o.error}" for o in failed[:3])
        raise TciaError(
            f"no series of {cfg.collection} could be downloaded from {cfg.base_url} "
            f"({len(failed)} failed; e.g. {reasons})"
        )
    return summary


def _download(
    client: _Client, series: list[SeriesInfo], out_dir: Path, work: Path, state: _State
) -> tuple[list[_Outcome], list[SeriesInfo]]:
    """Fetches the series not yet verified, in parallel; records each one verified."""
    present = [s for s in series if state.verified(s.uid, out_dir) is not None]
    done = {s.uid for s in present}
    # A folder recorded for another series (planned differently in an earlier run) is
    # never replaced: such a series goes to a folder named after its full UID.
    taken = {rec["folder"]: uid for uid, rec in state.series.items()}
    todo = [
        s
        if taken.get(s.folder, s.uid) == s.uid
        else dataclasses.replace(s, folder=f"{s.folder}-{_safe_component(s.uid, 'series')}")
        for s in series
        if s.uid not in done
    ]
    tmp = work / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # partial files of interrupted series
    tmp.mkdir(parents=True)
    total = sum(s.file_size or 0 for s in todo)
    free = shutil.disk_usage(out_dir).free
    if total > free:
        log.warning("%d bytes to download but only %d free in %s", total, free, out_dir)
    log.info(
        "%d series already verified, %d to download (%d bytes) with %d connections",
        len(present),
        len(todo),
        total,
        client.cfg.connections,
    )
    outcomes: list[_Outcome] = []
    bar = progress(
        total=total, desc=client.cfg.collection, unit="B", unit_scale=True, unit_divisor=1024
    )
    client._bar = bar
    done_count = [0]

    def fetch_and_record(s: SeriesInfo) -> _Outcome:
        # Recorded in the worker, right after installing: a series finished while the
        # main thread is being stopped is still on record.
        outcome = client.fetch_series(s, out_dir, tmp)
        if not outcome.error:
            state.add(
                s.uid,
                {
                    "folder": s.folder,
                    "patient_id": s.patient_id,
                    "files": outcome.files,
                    "md5": outcome.md5_checked,
                },
            )
        with client._lock:
            done_count[0] += 1
            bar.set_postfix_str(f"{done_count[0]}/{len(todo)} series")
        return outcome

    try:
        with ThreadPoolExecutor(client.cfg.connections, thread_name_prefix="tcia") as pool:
            futures = [pool.submit(fetch_and_record, s) for s in todo]
            try:
                for future in as_completed(futures):
                    outcomes.append(future.result())
            except BaseException:
                client.stop.set()
                for future in futures:
                    future.cancel()
                raise
    except KeyboardInterrupt:
        log.info(
            "download stopped: %d of %d series verified and recorded; a rerun fetches "
            "only the others",
            len(state.series.keys() & {s.uid for s in series}),
            len(series),
        )
        raise
    finally:
        state.flush()
        bar.close()
        client._bar = None
        shutil.rmtree(tmp, ignore_errors=True)  # partial files of stopped series
    return outcomes, present
