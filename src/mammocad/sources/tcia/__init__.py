"""The ``cbis-ddsm`` source: CBIS-DDSM downloaded from The Cancer Imaging Archive (TCIA).

CBIS-DDSM (Lee et al. 2017, Scientific Data 4:170177; CC BY 3.0) is the data set of the
paper's §3.1. TCIA serves its DICOM files through the NBIA image API, version 4, without
authentication: ``getSeries?Collection=CBIS-DDSM`` lists the collection's series as JSON,
``getImageWithMD5Hash?SeriesInstanceUID=…`` (or ``getImage?…&NewFileNames=Yes``) returns one
series as a ZIP of DICOM files. The four case-description CSVs are separate downloads.

The collection is about 164 GB in 6,775 series, so the client is built for long runs over
an unreliable link:

* Each series streams in chunks to ``.tcia/tmp/<uid>.zip.part`` (memory stays bounded), is
  renamed to ``<uid>.zip`` once its byte count matches ``Content-Length``, is extracted into
  a staging folder, verified, and only then renamed into
  ``CBIS-DDSM/<PatientID>/<study folder>/<series folder>/`` (NBIA retriever-like names;
  ``convert`` joins files by SeriesInstanceUID alone).
* Verification. The MD5 endpoint's ZIP holds, beside the DICOM files, ``md5hashes.csv``
  with the header ``Filename,MD5Hash`` and one ``<name in ZIP>,<32 hex digits>`` row per
  file, as NBIA's server writes it (and ``tcia_utils``/MONAI read it): every file must be
  listed and match. Without that list (a server without the MD5 endpoint, or a ZIP without
  the file) the number of files and their total size must equal ``getSeries``'
  ``ImageCount`` and ``FileSize``. The file count is checked in both cases.
* ZIP entries with absolute paths, drive letters, ``..`` components or symbolic links are
  refused (zip-slip): the series fails with the reason and nothing of it is installed.
* HTTP 5xx, 408 and 429, timeouts (connect or read idle), refused or dropped connections,
  short bodies, corrupt ZIPs and checksum or count mismatches are retried with capped
  exponential backoff; a series that still fails is reported and the run goes on.
* Resume. Every verified series is recorded, with its folder and file sizes, the moment
  it is installed: one fsynced line of ``.tcia/state.journal``, folded into
  ``.tcia/state.json`` (rewritten atomically) at the end of a run. A rerun skips those
  whose files are still in place, so a download stopped in any way (Ctrl-C, SIGTERM from
  a batch scheduler, even SIGKILL) picks up where it stopped; leftovers of unfinished
  series in ``.tcia/tmp`` are discarded. Nothing verified is ever deleted by a failure.
* Stopping. On SIGINT or SIGTERM (see :mod:`mammocad.errors`) the downloads stop within
  one chunk, the state is flushed and the temporary files are removed.
* Progress: a bar in bytes on a terminal, else a log line every
  ``MAMMOCAD_PROGRESS_S`` seconds with series and bytes done, rate and ETA.

``.tcia/`` is hidden, so ``convert`` does not read it.

Modules: :mod:`~mammocad.sources.tcia.config` (settings),
:mod:`~mammocad.sources.tcia.http` (requests, streaming, retryable errors),
:mod:`~mammocad.sources.tcia.api` (NBIA endpoints), :mod:`~mammocad.sources.tcia.series`
(choosing series and their folders), :mod:`~mammocad.sources.tcia.archive` (ZIP extraction
and verification), :mod:`~mammocad.sources.tcia.state` (resume state),
:mod:`~mammocad.sources.tcia.case_csvs` (case descriptions),
:mod:`~mammocad.sources.tcia.manifest` (``.tcia`` manifests) and
:mod:`~mammocad.sources.tcia.fetch` (the source).
"""

from mammocad.sources.tcia.archive import (
    MD5_LIST_NAME,
    extract_series,
    member_parts,
    parse_md5_list,
)
from mammocad.sources.tcia.config import (
    CSV_NAMES,
    NBIA_V4_URL,
    OFFICIAL_CSV_URLS,
    TciaConfig,
    TciaError,
)
from mammocad.sources.tcia.fetch import cbis_ddsm_source, fetch_cbis_ddsm
from mammocad.sources.tcia.manifest import read_tcia_manifest
from mammocad.sources.tcia.series import SeriesInfo, patient_number, plan_series, select_series
from mammocad.sources.tcia.state import STATE_NAME, WORK_DIR

__all__ = [
    "CSV_NAMES",
    "MD5_LIST_NAME",
    "NBIA_V4_URL",
    "OFFICIAL_CSV_URLS",
    "STATE_NAME",
    "WORK_DIR",
    "SeriesInfo",
    "TciaConfig",
    "TciaError",
    "cbis_ddsm_source",
    "extract_series",
    "fetch_cbis_ddsm",
    "member_parts",
    "parse_md5_list",
    "patient_number",
    "plan_series",
    "read_tcia_manifest",
    "select_series",
]
