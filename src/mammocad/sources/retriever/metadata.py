"""The NBIA Data Retriever's ``metadata.csv``: where it says each series lies (a check only)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

#: The retriever's listing beside the collection folder.
METADATA_NAME = "metadata.csv"


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
