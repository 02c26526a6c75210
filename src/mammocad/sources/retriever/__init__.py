"""CBIS-DDSM from a copy already on disk (an NBIA Data Retriever folder), and ``.tcia`` manifests.

Most people who work with CBIS-DDSM (paper §3.1) already hold it, downloaded with TCIA's
NBIA Data Retriever: ``<folder>/CBIS-DDSM/<Subject ID>/<study>/<series>/1-1.dcm …`` and,
in recent retriever versions, ``<folder>/metadata.csv``. With ``data.cbis_ddsm.root`` set,
the ``cbis-ddsm`` source reads that folder instead of the image API:

* **Index.** Every DICOM-like file below the root has its header read, never its pixel data
  (``stop_before_pixels``), on every core, with a progress line. Series are what the headers
  say (SeriesInstanceUID), never what folder names suggest; the retriever's
  ``metadata.csv`` is only checked against them. The headers are cached in
  ``<download_dir>/cbis-ddsm-root/index-<hash of the root>.json``, keyed by each file's
  path, size and modification time, so an unchanged folder is not read again and a changed
  one only where it changed (a journal beside it keeps the work of an interrupted run).
* **Join.** The case-description CSVs come from ``csv_dir``, else from the folder (the four
  official file names found anywhere below the root), else from ``csv_urls``. The series
  they name are looked up in the index.
* **Link.** ``data/raw`` gets the files of those series at their paths below the root: hard
  links, else symbolic links, else copies (the method is logged), except files carrying
  identifying fields, which are written as de-identified copies
  (:mod:`mammocad.deid`). Files under the root are never written to.
* **Accounting.** Series the CSVs name but the folder lacks are listed, with the reason,
  in ``data/raw/missing_series.csv`` (``convert`` quotes it, and the items they hold count
  toward ``convert.max_skipped_fraction``); unreadable files, second copies of one
  SOPInstanceUID and series the CSVs do not name are listed in
  ``data/raw/root_skipped.csv`` and counted in the summary. A file is never lost for a bad
  neighbour: of two files claiming one SOPInstanceUID the complete one is kept.

A root that does not exist, holds no DICOM file, or holds none of the series the CSVs name
(another collection) stops ``download`` with one line.

``.tcia`` manifests (:func:`~mammocad.sources.tcia.manifest.read_tcia_manifest`) list the
series an NBIA download fetches; with ``data.cbis_ddsm.manifest`` set, the API download
fetches exactly those.

Modules: :mod:`~mammocad.sources.retriever.index` (the walk of the root and the cached
header index), :mod:`~mammocad.sources.retriever.metadata` (the retriever's
``metadata.csv``), :mod:`~mammocad.sources.retriever.linking` (the series the case
descriptions name, linked into ``data/raw``, and the lists of what is missing or skipped)
and :mod:`~mammocad.sources.retriever.fetch` (:func:`fetch_from_root`).
"""

from mammocad.sources.retriever.fetch import case_csvs_from_root, fetch_from_root, log_summary
from mammocad.sources.retriever.index import (
    INDEX_VERSION,
    Entry,
    HeaderIndex,
    Scan,
    index_headers,
    scan_root,
)
from mammocad.sources.retriever.linking import (
    MISSING_COLUMNS,
    MISSING_NAME,
    SKIPPED_COLUMNS,
    SKIPPED_NAME,
    UNKNOWN_SERIES,
    Linker,
    link_series,
    needed_series,
)
from mammocad.sources.retriever.metadata import METADATA_NAME, read_metadata

__all__ = [
    "INDEX_VERSION",
    "METADATA_NAME",
    "MISSING_COLUMNS",
    "MISSING_NAME",
    "SKIPPED_COLUMNS",
    "SKIPPED_NAME",
    "UNKNOWN_SERIES",
    "Entry",
    "HeaderIndex",
    "Linker",
    "Scan",
    "case_csvs_from_root",
    "fetch_from_root",
    "index_headers",
    "link_series",
    "log_summary",
    "needed_series",
    "read_metadata",
    "scan_root",
]
