"""One series ZIP extracted and verified: NBIA's ``md5hashes.csv`` (or the file count and
size of ``getSeries``), and the refusal of entries that would leave their folder (zip-slip).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from mammocad.sources.tcia.http import _CHUNK, _Refuse, _Retry
from mammocad.sources.tcia.series import SeriesInfo

log = logging.getLogger(__name__)

#: The checksum list inside a ``getImageWithMD5Hash`` ZIP.
MD5_LIST_NAME = "md5hashes.csv"
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")


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
