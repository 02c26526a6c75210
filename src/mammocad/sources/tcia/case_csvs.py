"""The four CBIS-DDSM case-description CSVs: checked to be what they claim, and cut to the
chosen abnormality type, patients or manifest series.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from mammocad.io import atomic_file
from mammocad.sources.tcia.config import TciaError
from mammocad.sources.tcia.series import patient_number


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
