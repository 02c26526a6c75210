"""HTTP for the TCIA download: opening a URL, streaming a body in chunks with its length
checked, and the exceptions that tell a transient failure (retry) from a permanent one.
"""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from mammocad import __version__

_CHUNK = 256 * 1024
#: HTTP statuses below 500 that are worth retrying.
_RETRY_STATUS = frozenset({408, 425, 429})


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
        return urllib.request.urlopen(request, timeout=timeout)  # http(s) only
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
