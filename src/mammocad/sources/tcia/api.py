"""The NBIA v4 image API: the collection's series list (``getSeries``), one series as a
ZIP (``getImageWithMD5Hash``, else ``getImage``) downloaded, verified and installed with
retries and backoff, and the case-description CSVs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mammocad.io import atomic_file
from mammocad.sources.tcia.archive import _extract
from mammocad.sources.tcia.case_csvs import _check_csv_header
from mammocad.sources.tcia.config import CSV_NAMES, TciaConfig, TciaError, _url_name
from mammocad.sources.tcia.http import _Cancelled, _HttpStatus, _open, _Refuse, _Retry, _stream
from mammocad.sources.tcia.series import SeriesInfo, _safe_component

log = logging.getLogger(__name__)

#: Answers to ``getImageWithMD5Hash`` that mean "this server has no such endpoint".
_NO_ENDPOINT_STATUS = frozenset({404, 405, 501})


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
