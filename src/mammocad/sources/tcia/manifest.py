"""``.tcia`` manifests: the series lists an NBIA download fetches.

The NBIA Data Retriever reads a ``.tcia`` file: ``key=value`` lines (``downloadServerUrl``,
``includeAnnotation``, ``noOfrRetry``, ``databasketId``, ``manifestVersion``), then
``ListOfSeriesToDownload=`` and one SeriesInstanceUID per line. With
``data.cbis_ddsm.manifest`` set, the ``cbis-ddsm`` source fetches exactly those series.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mammocad.errors import InputError, InputNotFound

_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def read_tcia_manifest(path: str | os.PathLike) -> list[str]:
    """The SeriesInstanceUIDs a ``.tcia`` manifest lists, in its order.

    The file holds ``key=value`` lines, then ``ListOfSeriesToDownload=`` and one UID per
    line. A byte-order mark and blank lines are accepted.

    Raises:
        InputNotFound: if the file does not exist.
        InputError: naming the line, for a line after the list header that is not a UID, a
            UID listed twice, no ``ListOfSeriesToDownload=`` line, or an empty list.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputNotFound(f"data.cbis_ddsm.manifest: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"data.cbis_ddsm.manifest: cannot read {path}: {err}") from None
    uids: list[str] = []
    seen: dict[str, int] = {}
    listing = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not listing:
            key, _, value = line.partition("=")
            if key.strip() == "ListOfSeriesToDownload":
                listing = True
                line = value.strip()
            else:
                continue
        if not line:
            continue
        if not (_UID.match(line) and len(line) <= 64):
            raise InputError(f"{path} line {number}: not a SeriesInstanceUID: {line[:80]!r}")
        if line in seen:
            raise InputError(
                f"{path} line {number}: series {line} already listed on line {seen[line]}"
            )
        seen[line] = number
        uids.append(line)
    if not listing:
        raise InputError(f"{path}: no 'ListOfSeriesToDownload=' line; is it a .tcia manifest?")
    if not uids:
        raise InputError(f"{path}: the manifest lists no series")
    return uids
