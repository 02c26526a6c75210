"""A user's own mammograms, labelled by a CSV, as a raw-data source in the CBIS-DDSM layout.

Any folder of greyscale mammograms can feed the pipeline (paper §3.1's models then train
and test on it) once a labels CSV says what each image shows. The images are wrapped into
the layout every source writes (:mod:`mammocad.sources.layout`): one 16-bit Secondary
Capture "full mammogram images" series per image and, when a lesion mask or box is given,
one "ROI mask images" series with the crop and the binary mask; case-description rows
carry ``dataset`` = ``local``.

Images (found by content, searched recursively below ``root``; hidden files and folders
are ignored; read by :mod:`mammocad.imaging`):

* DICOM, any transfer syntax :func:`mammocad.dicom.read_pixels` decodes; its checks apply
  (another modality such as CT, colour, multi-frame, corrupt pixel data are skipped with
  its reason). Its 16-bit output (stored range stretched to ``0..65535``, VOI applied,
  MONOCHROME1 inverted) is what is written.
* PNG, 8- or 16-bit greyscale. 8-bit values are multiplied by 257; 16-bit values are kept.
  Colour (or grey + alpha) PNGs are skipped as ``not greyscale``.
* PGM (``P5`` binary or ``P2`` text), values stretched from ``0..maxval`` to ``0..65535``.

Labels CSV (``labels``; default ``<root>/labels.csv``), one row per image. Header names
are matched case-insensitively, spaces and dashes read as underscores; cells are
stripped; other columns are ignored. Columns:

* ``file`` (required): image path relative to ``root`` (``/`` or ``\\`` separators).
* ``patient_id`` (required): patient identifier; all images of a patient share one
  split. It is copied to the outputs as given: use a pseudonym.
* ``pathology`` (required): ``NORMAL``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK`` (kept
  as such, counted as benign) or ``MALIGNANT``, in any letter case.
* ``laterality``: ``LEFT``/``RIGHT`` (also ``L``/``R``). Empty: the DICOM
  ImageLaterality/Laterality, else inferred from the image (the half holding more tissue
  is the chest wall side: left for a LEFT breast, as in CBIS-DDSM).
* ``view``: ``CC`` or ``MLO``. Empty: the DICOM ViewPosition, else left empty.
* ``abnormality_type``: ``mass`` or ``calcification`` for a finding (default ``mass``);
  ignored for ``NORMAL`` rows.
* ``split``: ``train`` or ``test``. Patients without one are drawn with the run's seed
  (``test_fraction`` of them, stratified by their worst pathology); the rows of one
  patient must not name different splits.
* ``mask``: path (relative to ``root``) of a binary lesion mask of the image's size, in
  any of the image formats; non-zero = lesion. Ignored for ``NORMAL`` rows.
* ``roi_x0``, ``roi_y0``, ``roi_x1``, ``roi_y1``: a lesion box in pixels (x = column,
  y = row; ``x1``/``y1`` exclusive, clipped to the image), used when there is no
  ``mask``; all four or none.

Example::

    file,patient_id,pathology,laterality,view,abnormality_type,mask,roi_x0,roi_y0,roi_x1,roi_y1
    p01/left_cc.dcm,P01,MALIGNANT,LEFT,CC,mass,p01/left_cc_mask.png,,,,
    p01/right_cc.dcm,P01,NORMAL,RIGHT,CC,,,,,,
    p02/img7.png,P02,benign,L,MLO,calcification,,1200,830,1460,1010

A finding without mask or box gets a case-description row with empty ROI paths: the image
is kept with its pathology and ``convert`` records its ROI as missing. The ROI crop is the
lesion's bounding box plus a margin (:func:`mammocad.boxes.relative_margins`), as for DDSM.

Everything that cannot be used is recorded with its reason, returned in the summary and
written to ``local_skipped.csv`` (``file, row, reason``): files under ``root`` that no row
lists (``not listed in labels``), rows whose file is missing (``listed in labels but not
found``), unreadable, colour or non-mammographic images, bad label values, unusable masks
(the image is then kept without its ROI), images below the shared minimum size
(:mod:`mammocad.image_rules`). Errors naming the labels file (and rows): a missing, empty,
header-only, non-UTF-8 or not comma-separated CSV, a required column missing, ``file`` or
``mask`` paths leaving ``root`` (absolute, ``..``, symbolic links: nothing is read), one
file listed twice with different labels (both row numbers), a patient in both splits, no
row giving a usable image. A file listed twice with the same labels keeps its first row.

Modules: :mod:`~mammocad.sources.local.labels` (the labels CSV),
:mod:`~mammocad.sources.local.plan` (rows validated, splits),
:mod:`~mammocad.sources.local.write` (one image's series) and
:mod:`~mammocad.sources.local.fetch` (the source).
"""

from mammocad.sources.local.fetch import LocalConfig, fetch_local
from mammocad.sources.local.labels import (
    NOT_FOUND,
    NOT_LISTED,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SKIPPED_COLUMNS,
    read_labels,
)
from mammocad.sources.local.write import DATASET

__all__ = [
    "DATASET",
    "NOT_FOUND",
    "NOT_LISTED",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SKIPPED_COLUMNS",
    "LocalConfig",
    "fetch_local",
    "read_labels",
]
