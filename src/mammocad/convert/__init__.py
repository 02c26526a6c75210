"""The ``convert`` step: CBIS-DDSM-format DICOM trees → 16-bit PNGs and one manifest.

Input (a ``data/raw`` folder): ``csv/*_case_description_*_set.csv`` and DICOM files
anywhere below, joined only by SeriesInstanceUID (see :mod:`mammocad.cbis`). Output
(written atomically)::

    <out>/full/<image_id>.png        16-bit full mammogram
    <out>/roi/<roi_id>_crop.png      16-bit cropped ROI
    <out>/roi/<roi_id>_mask.png      8-bit binary mask (0/255), full-image size
    <out>/manifest.csv               one row per full image and per ROI (MANIFEST_COLUMNS)
    <out>/skipped.csv                file, image_id, reason

Each full image and its ROIs are one task in a worker process: the task decodes its DICOM
files, writes the PNGs and returns small row dicts, so pixel arrays never accumulate in the
parent (a CBIS-DDSM full image is about 25 MB as ``uint16``).

Crop and mask are told apart by content, never by the CSV column or file order, because
both share one "ROI mask images" series and the CSV columns are swapped on some rows: a
mask is binary (at most two distinct values) and has the full image's size; the crop is
the other image. A row counts as *swapped* when the file found to be the mask sits where
the CSV's crop column points: in the crop column's series when the two columns name
different series, else at the crop column's ``00000N.dcm`` position, ``N`` counted from 0
over the series' files ordered by InstanceNumber.

Skipped-fraction definition: CSV items are the distinct full images plus the ROI rows;
the fraction is skipped CSV items ÷ all CSV items. DICOM files that no CSV row references
(stray files) and files that cannot be read while indexing are listed in ``skipped.csv``
but do not count, since no CSV item is lost through them (a lost item shows up as its own
"series … not found under raw" row).

Every source's full images pass through here, so the one minimum-image rule
(:mod:`mammocad.image_rules`: too small or blank) is applied here for all of them; a
refused full image is a skip row with the reason, and its ROIs are skipped with it.

Only image sizes, bit depths and CSV fields reach the outputs; no DICOM patient field is
written (see :data:`mammocad.dicom.SAFE_FIELDS`).

Modules: :mod:`~mammocad.convert.index` (the DICOM tree index, stray files),
:mod:`~mammocad.convert.plan` (case-description rows grouped into per-image tasks),
:mod:`~mammocad.convert.roi` (crop and mask told apart by content, written),
:mod:`~mammocad.convert.image` (the per-image task), :mod:`~mammocad.convert.rows`
(manifest rows), :mod:`~mammocad.convert.skips` (skip reasons and their categories),
:mod:`~mammocad.convert.journal` (resuming an interrupted run) and
:mod:`~mammocad.convert.dataset` (the driver, :func:`convert_dataset`).
"""

from mammocad.convert.dataset import ConvertError, ConvertResult, convert_dataset
from mammocad.convert.index import DicomIndex, index_dicoms
from mammocad.convert.journal import JOURNAL
from mammocad.convert.rows import DATASET, default_dataset
from mammocad.convert.skips import (
    MISSING_SERIES,
    REASON_CATEGORIES,
    UNREFERENCED,
    missing_reasons,
    reason_category,
)

__all__ = [
    "DATASET",
    "JOURNAL",
    "MISSING_SERIES",
    "REASON_CATEGORIES",
    "UNREFERENCED",
    "ConvertError",
    "ConvertResult",
    "DicomIndex",
    "convert_dataset",
    "default_dataset",
    "index_dicoms",
    "missing_reasons",
    "reason_category",
]
