"""The mini-MIAS archive: downloaded with resume and checked by SHA-256, and unpacked,
taking only ``Info.txt``, the licence and the ``mdbNNN.pgm`` films (no links, no paths
outside the target).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from mammocad.errors import InputError
from mammocad.io import sha256_file
from mammocad.progress import progress

log = logging.getLogger(__name__)

#: Where the Pilot European Image Processing Archive serves the database.
MIAS_URL = "http://peipa.essex.ac.uk/pix/mias/all-mias.tar.gz"
#: Timeout of one network read while downloading, in seconds.
TIMEOUT_S = 60.0
_WANTED = re.compile(r"(info\.txt|licence\.txt|license\.txt|mdb\d{3}\.pgm)", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def _archive_name(url: str) -> str:
    name = PurePosixPath(urlparse(url).path).name
    return name or "all-mias.tar.gz"


def download_archive(
    url: str, dest: str | os.PathLike, sha256: str = "", timeout: float = TIMEOUT_S
) -> Path:
    """Downloads ``url`` to ``dest``, resuming a partial ``dest.part`` and checking SHA-256.

    An existing ``dest`` is reused when it matches ``sha256`` (or none is given). The body
    streams to ``<dest>.part`` with a bytes progress bar and is renamed to ``dest`` only once
    complete and verified; an interrupted download leaves the ``.part`` file, and the next
    call asks the server for the rest (HTTP Range) or starts over if it does not support it.

    Args:
        url: HTTP(S) address of the archive.
        dest: where to keep the archive.
        sha256: expected checksum (hex), or empty.
        timeout: seconds to wait for the server on connect and on each read.

    Returns:
        ``dest``.

    Raises:
        ConnectionError: when the server cannot be reached, answers with an error, or the
            transfer stops early (the partial file is kept for a resume).
        ValueError: when the downloaded file does not match ``sha256`` (it is deleted).
    """
    dest = Path(dest)
    expected = sha256.strip().lower()
    if dest.exists():
        if not expected or sha256_file(dest) == expected:
            log.info("using %s, downloaded before", dest)
            return dest
        log.warning("%s does not match sha256 %s; downloading it again", dest, expected)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _fetch_to(url, part, timeout, resume=True)
    digest = sha256_file(part)
    if expected and digest != expected:
        part.unlink()
        raise InputError(
            f"sha256 mismatch for {url}: expected {expected}, got {digest} "
            "(the download was deleted)"
        )
    os.replace(part, dest)
    log.info("downloaded %s to %s (sha256 %s)", url, dest, digest)
    return dest


def _fetch_to(url: str, part: Path, timeout: float, resume: bool) -> None:
    """Streams ``url`` into ``part``, appending to what is there when the server allows."""
    offset = part.stat().st_size if resume and part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mammocad"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The partial file is as long as (or longer than) the resource: start over.
            part.unlink()
            _fetch_to(url, part, timeout, resume=False)
            return
        raise ConnectionError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ConnectionError(f"cannot download {url}: {exc}") from exc
    with response:
        if offset and response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                # A range other than the one asked for cannot be appended: start over.
                response.close()
                part.unlink()
                _fetch_to(url, part, timeout, resume=False)
                return
            log.info("resuming the download of %s at byte %d", url, offset)
        elif offset:
            offset = 0  # the server ignored the range and sends the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        try:
            with (
                open(part, "ab" if offset else "wb") as fh,
                progress(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"download {part.name[: -len('.part')]}",
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    fh.write(chunk)
                    bar.update(len(chunk))
        except OSError as exc:
            raise ConnectionError(
                f"download of {url} interrupted ({exc}); run again to resume from {part}"
            ) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        raise ConnectionError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume "
            f"from {part}"
        )


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike) -> dict[str, Path]:
    """Extracts ``Info.txt``, the licence and the ``mdbNNN.pgm`` files of a mini-MIAS tar.

    Safe by construction: only regular files are extracted, each to ``target/<base name>``
    whatever folder it sits in inside the archive, so nothing can land outside ``target``;
    links and other entries are skipped. An archive naming an absolute path or a ``..``
    component is refused outright.

    Args:
        archive: a tar file, compressed or not.
        target: folder to extract into (created).

    Returns:
        Lower-case base name → extracted file.

    Raises:
        ValueError: for a file that is not a tar archive, an unsafe entry name, or two
            wanted entries with the same base name, naming the archive and the entry.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{archive}: not a readable tar archive ({exc})") from exc
    with tar, progress(desc=f"extract {archive.name}", unit="file") as bar:
        for member in tar:
            name = member.name.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in parts:
                raise InputError(f"{archive}: unsafe entry {member.name!r} (outside the target)")
            base = parts[-1] if parts else ""
            if not _WANTED.fullmatch(base):
                continue
            if not member.isfile():
                log.warning("%s: skipping %s, not a regular file", archive, member.name)
                continue
            key = base.lower()
            if key in found:
                raise InputError(f"{archive}: two entries named {base!r} ({member.name!r})")
            out = target / key
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - regular files always have a stream
                continue
            with source, open(out, "wb") as fh:
                shutil.copyfileobj(source, fh, _CHUNK)
            found[key] = out
            bar.update()
    return found


def _index_folder(folder: Path) -> dict[str, Path]:
    """Lower-case base name → file, for an archive extracted beforehand."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and _WANTED.fullmatch(path.name):
            if path.name.lower() in found:
                raise InputError(f"{folder}: two files named {path.name!r}")
            found[path.name.lower()] = path
    return found
