"""An emulated TCIA NBIA v4 server for the ``cbis-ddsm`` source's tests.

Serves, on 127.0.0.1 from a daemon thread, what the real API serves for one collection:

* ``getSeries?Collection=…`` — JSON list of series (``SeriesInstanceUID``, ``PatientID``,
  ``StudyInstanceUID``, ``SeriesDescription``, ``ImageCount``, ``FileSize`` …);
* ``getImageWithMD5Hash?SeriesInstanceUID=…`` — a ZIP of the series' files named
  ``00000001.dcm`` … plus ``md5hashes.csv`` (``Filename,MD5Hash`` header, one
  ``<name>,<hex>`` row per file), as NBIA's server builds it;
* ``getImage?SeriesInstanceUID=…&NewFileNames=Yes`` — the same ZIP without the list, files
  named ``1-1.dcm`` …;
* ``/csv/<name>`` — case-description files.

Faults are injected per series (or for every series) and hit the first ``times`` image
requests of that series: HTTP 500, a dropped connection half-way through the body (with
``Content-Length`` or chunked, as NBIA streams its ZIPs), a
truncated ZIP, a wrong MD5, a response slower than the client's timeout, unsafe ZIP
entries (``../evil.dcm``, an absolute path, a symbolic link), a wrong ``FileSize``. Every
handler is bounded in time (socket timeout, bounded sleeps).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import stat
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom

#: Fault kinds the server can inject.
FAULTS = (
    "500",
    "drop",
    "drop_chunked",
    "truncate",
    "bad_md5",
    "slow",
    "zip_slip",
    "zip_absolute",
    "zip_symlink",
)
FOREVER = 1 << 30
API_PATH = "/nbia-api/services/v4/"


@dataclass
class Fault:
    """A fault hitting the first ``times`` image requests of a series."""

    kind: str
    times: int = FOREVER

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}; valid: {FAULTS}")


@dataclass
class Series:
    """One series the server holds: its getSeries record and its files."""

    record: dict
    files: list[Path]


@dataclass
class ServerState:
    """What tests configure and observe; reset between tests."""

    series_mode: str = "ok"  # ok | empty | 500 | html
    md5: bool = True  # False: getImageWithMD5Hash answers 404
    faults: dict[str, Fault] = field(default_factory=dict)
    default_fault: Fault | None = None
    slow_s: float = 1.0
    delay_s: float = 0.0  # every image request waits this long (a slow link, not a fault)
    file_size_offset: dict[str, int] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)  # (endpoint, uid) -> count


def index_series(root: Path, collection: str = "CBIS-DDSM") -> dict[str, Series]:
    """getSeries records and files of every DICOM series below ``root``."""
    grouped: dict[str, list[tuple[int, Path, pydicom.Dataset]]] = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        grouped.setdefault(str(ds.SeriesInstanceUID), []).append(
            (int(ds.InstanceNumber), path, ds)
        )
    out = {}
    for uid, items in grouped.items():
        items.sort(key=lambda t: (t[0], str(t[1])))
        ds = items[0][2]
        files = [p for _, p, _ in items]
        out[uid] = Series(
            record={
                "SeriesInstanceUID": uid,
                "StudyInstanceUID": str(ds.StudyInstanceUID),
                "Modality": "MG",
                "SeriesDate": "",
                "BodyPartExamined": "BREAST",
                "SeriesNumber": 1,
                "Collection": collection,
                "PatientID": str(ds.PatientID),
                "SeriesDescription": str(ds.SeriesDescription),
                "ImageCount": len(files),
                "FileSize": sum(p.stat().st_size for p in files),
                "LicenseName": "Creative Commons Attribution 3.0 Unported License",
                "LicenseURI": "http://creativecommons.org/licenses/by/3.0/",
                "DateReleased": "2017-09-14 00:00:00.0",
                "StudyDate": f"{str(ds.StudyDate)[:4]}-{str(ds.StudyDate)[4:6]}-"
                f"{str(ds.StudyDate)[6:8]}",
            },
            files=files,
        )
    return out


def build_zip(files: list[Path], md5: bool, fault: str = "") -> bytes:
    """The ZIP of one series as the endpoint (MD5 or not) returns it, with a fault."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        rows = []
        for i, path in enumerate(files, start=1):
            name = f"{i:08d}.dcm" if md5 else f"1-{i}.dcm"
            data = path.read_bytes()
            zf.writestr(name, data)
            digest = hashlib.md5(data).hexdigest()
            if fault == "bad_md5" and i == 1:
                digest = hashlib.md5(data + b"x").hexdigest()
            rows.append(f"{name},{digest}\n")
        if fault == "zip_slip":
            zf.writestr("../evil.dcm", b"evil")
        elif fault == "zip_absolute":
            zf.writestr("/tmp/mammocad-evil.dcm", b"evil")
        elif fault == "zip_symlink":
            info = zipfile.ZipInfo("link.dcm")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../../evil.dcm")
        if md5:
            zf.writestr("md5hashes.csv", "Filename,MD5Hash\n" + "".join(rows))
    data = buf.getvalue()
    if fault == "truncate":
        data = data[: len(data) * 2 // 3]
    return data


class EmulatedNbia:
    """A local NBIA v4 server; use as a context manager or call ``start``/``stop``."""

    def __init__(self, series: dict[str, Series], csv_files: dict[str, bytes]) -> None:
        self.series = series
        self.csv_files = csv_files
        self.state = ServerState()
        self.lock = threading.Lock()
        self._zips: dict[tuple[str, bool], bytes] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> EmulatedNbia:
        handler = type("Handler", (_Handler,), {"nbia": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> EmulatedNbia:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self.lock:
            self.state = ServerState()

    # -- addresses and observations

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.root + API_PATH

    def csv_urls(self) -> tuple[str, ...]:
        return tuple(f"{self.root}/csv/{name}" for name in self.csv_files)

    def image_requests(self, uid: str | None = None) -> int:
        """Image requests (both endpoints) in all or for one series."""
        with self.lock:
            return sum(
                n
                for (endpoint, u), n in self.state.requests.items()
                if endpoint in ("getImage", "getImageWithMD5Hash") and (uid is None or u == uid)
            )

    def requested_series(self) -> set[str]:
        with self.lock:
            return {
                u
                for (endpoint, u) in self.state.requests
                if endpoint in ("getImage", "getImageWithMD5Hash")
            }

    # -- content

    def series_list(self, collection: str) -> list[dict]:
        if collection != "CBIS-DDSM":
            return []
        out = []
        for uid, s in sorted(self.series.items()):
            record = dict(s.record)
            record["FileSize"] += self.state.file_size_offset.get(uid, 0)
            out.append(record)
        return out

    def zip_for(self, uid: str, md5: bool, fault: str) -> bytes:
        if fault in ("", "500", "drop", "drop_chunked", "slow"):
            key = (uid, md5)
            if key not in self._zips:
                self._zips[key] = build_zip(self.series[uid].files, md5)
            return self._zips[key]
        return build_zip(self.series[uid].files, md5, fault)

    def take_fault(self, endpoint: str, uid: str) -> str:
        """Counts the request and returns the fault it meets ('' for none)."""
        with self.lock:
            self.state.requests[(endpoint, uid)] += 1
            n = sum(
                c
                for (e, u), c in self.state.requests.items()
                if u == uid and e in ("getImage", "getImageWithMD5Hash")
            )
            fault = self.state.faults.get(uid, self.state.default_fault)
            return fault.kind if fault is not None and n <= fault.times else ""


class _Handler(BaseHTTPRequestHandler):
    nbia: EmulatedNbia
    timeout = 10  # seconds per socket operation: no handler can hang
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        try:
            self._route()
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout ran out)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        nbia = self.nbia
        if url.path.startswith("/csv/"):
            name = url.path[len("/csv/") :]
            with nbia.lock:
                nbia.state.requests[("csv", name)] += 1
            body = nbia.csv_files.get(name)
            if body is None:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, body, "text/csv")
            return
        if not url.path.startswith(API_PATH):
            self._send(404, b"not found", "text/plain")
            return
        endpoint = url.path[len(API_PATH) :]
        if endpoint == "getSeries":
            with nbia.lock:
                nbia.state.requests[("getSeries", "")] += 1
                mode = nbia.state.series_mode
            if mode == "500":
                self._send(500, b"Internal Server Error", "text/plain")
            elif mode == "empty":
                self._send(200, b"[]", "application/json")
            elif mode == "html":
                self._send(200, b"<html>maintenance</html>", "text/html")
            else:
                body = json.dumps(nbia.series_list(query.get("Collection", ""))).encode()
                self._send(200, body, "application/json")
            return
        if endpoint in ("getImage", "getImageWithMD5Hash"):
            uid = query.get("SeriesInstanceUID", "")
            md5 = endpoint == "getImageWithMD5Hash"
            if md5 and not nbia.state.md5:
                self._send(404, b"not found", "text/plain")
                return
            if uid not in nbia.series:
                self._send(400, b"unknown SeriesInstanceUID", "application/json")
                return
            fault = nbia.take_fault(endpoint, uid)
            if nbia.state.delay_s:
                time.sleep(nbia.state.delay_s)
            if fault == "500":
                self._send(500, b"Internal Server Error", "text/plain")
                return
            if fault == "slow":
                time.sleep(nbia.state.slow_s)  # longer than the client waits
            body = nbia.zip_for(uid, md5, fault)
            if fault == "drop_chunked":  # NBIA streams ZIPs: no Content-Length
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                half = body[: len(body) // 2]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(half), half))
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault == "drop":
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._send(200, body, "application/zip")
            return
        self._send(404, b"unknown endpoint", "text/plain")
