"""The ``data.cbis_ddsm`` settings (:class:`TciaConfig`), TCIA's addresses, and the
error that stops a download (:class:`TciaError`).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from mammocad.errors import ExpectedError

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


class TciaError(ExpectedError, RuntimeError):
    """The download cannot go on: no series list, no case descriptions, nothing fetched."""


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
            series it lists (see :mod:`mammocad.sources.tcia.manifest`).
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
