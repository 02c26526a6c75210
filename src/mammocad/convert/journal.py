"""Resuming an interrupted ``convert``: the fingerprint of its inputs and code, the partial
work folder beside the output, and the journal of finished images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from mammocad import cbis
from mammocad import dicom as dicom_module
from mammocad.convert.index import DicomIndex

JOURNAL = "journal.jsonl"
_FINGERPRINT = "fingerprint"


def _fingerprint(table: pd.DataFrame, index: DicomIndex) -> str:
    """What a partial conversion was made from: the case descriptions, the DICOM files
    (paths, sizes, modification times) and the converter's own code. A resumed run reuses
    earlier work only when all of them are unchanged."""
    h = hashlib.sha256()
    h.update(table.to_csv(index=False).encode())
    for uid in sorted(index.series):
        for path in index.series[uid]:
            st = path.stat()
            h.update(f"{uid}|{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    # the converter is every module of this package, and of the DICOM reader's
    converter = sorted(Path(__file__).parent.glob("*.py"))
    reader = sorted(Path(dicom_module.__file__).parent.glob("*.py"))
    for module in (*converter, cbis.__file__, *reader):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def _open_partial(out_dir: Path, fingerprint: str) -> Path:
    """The work folder beside ``out_dir`` that survives an interrupted run.

    Images are written there as they are converted and listed in a journal; a rerun with
    the same fingerprint skips them, any other rerun starts afresh.
    """
    partial = out_dir.parent / f".{out_dir.name}.partial"
    stamp = partial / _FINGERPRINT
    if not (stamp.is_file() and stamp.read_text() == fingerprint):
        shutil.rmtree(partial, ignore_errors=True)
        for sub in ("full", "roi"):
            (partial / sub).mkdir(parents=True)
        stamp.write_text(fingerprint)
        (partial / JOURNAL).touch()
    return partial


def _read_journal(partial: Path) -> dict[str, dict[str, Any]]:
    """Results of the images an earlier run finished; a torn last line is ignored."""
    done = {}
    with open(partial / JOURNAL) as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break  # the run stopped while writing this line
            done[entry["image_id"]] = entry["result"]
    return done
