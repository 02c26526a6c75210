"""The original DDSM (USF) as a raw-data source in the CBIS-DDSM layout.

CBIS-DDSM, the paper's data set (§3.1), is a curated subset of the Digital Database for
Screening Mammography (Heath et al., "The Digital Database for Screening Mammography",
Proc. IWDM 2000). This source reads a local copy of the original DDSM and writes the
layout every other source writes (:mod:`mammocad.sources.layout`), so ``convert`` and the
later stages run unchanged on it.

Where the files come from: USF published DDSM by FTP and HTTP, one folder per case below
``cases/<kind>s/<kind>_<nn>/`` (``normals/normal_01``, ``cancers/cancer_05``,
``benigns/benign_02``, ``benign_without_callbacks/benign_without_callback_01``), e.g.
``cases/benigns/benign_01/case0029/``. Nothing is downloaded here: ``root`` is a folder
holding such case folders at any depth (``cases/<volume>/<case>/`` works as well as the
full tree); every ``*.ics`` file below it is one case.

Files of a case (USF "case description" page; the same facts are relied on by the public
converters ``aaalgo/ljpeg``, ``trane293/DDSMUtility`` and ``multinormal/ddsm``):

* ``A-0001-1.ics``: text, one ``KEY value...`` per line: ``filename A-0001-1``,
  ``DATE_OF_STUDY 2 7 1995`` (month day year), ``PATIENT_AGE 42``, ``FILM_TYPE REGULAR``,
  ``DENSITY 3`` (ACR breast density), ``DATE_DIGITIZED 7 22 1997``, ``DIGITIZER LUMISYS
  LASER`` (or ``DBA 21``, ``HOWTEK ...``), then after ``SEQUENCE`` one line per image:
  ``LEFT_CC LINES 4696 PIXELS_PER_LINE 3024 BITS_PER_PIXEL 12 RESOLUTION 50 OVERLAY``
  (``NON_OVERLAY`` when the image has no outlined finding). LINES is the number of rows,
  PIXELS_PER_LINE the number of columns, RESOLUTION the pixel size in microns.
* ``A_0001_1.LEFT_CC.LJPEG`` (note the underscores): the image, a lossless JPEG (ITU-T T.81
  process 14, SOF3) written by the Stanford PVRG codec (``jpeg -d -s`` decodes it).
* ``A_0001_1.LEFT_CC.OVERLAY``: the outlined findings of that image::

      TOTAL_ABNORMALITIES 1
      ABNORMALITY 1
      LESION_TYPE MASS SHAPE IRREGULAR MARGINS SPICULATED
      ASSESSMENT 4
      SUBTLETY 3
      PATHOLOGY MALIGNANT
      TOTAL_OUTLINES 1
      BOUNDARY
      1420 2237 4 4 4 5 4 ... 0 0 #

  ``LESION_TYPE CALCIFICATION TYPE PLEOMORPHIC DISTRIBUTION CLUSTERED`` for
  calcifications; an abnormality may carry two ``LESION_TYPE`` lines (e.g. a calcification
  and an architectural distortion); descriptors use the BI-RADS terms of CBIS-DDSM, with
  ``N/A`` where CBIS-DDSM writes ``NA``. PATHOLOGY is ``MALIGNANT``, ``BENIGN``,
  ``BENIGN_WITHOUT_CALLBACK`` or ``UNPROVEN``. Each outline is a chain code: after the
  keyword ``BOUNDARY`` (the first outline, which contains the others) or ``CORE`` come the
  starting column and row, then one direction per step, then ``#``. Directions (USF case
  description page; the same table is used by the converters named above)::

      7 0 1        0 N (row - 1)     1 NE (col + 1, row - 1)   2 E (col + 1)
      6 X 2        3 SE (col + 1, row + 1)   4 S (row + 1)     5 SW (col - 1, row + 1)
      5 4 3        6 W (col - 1)     7 NW (col - 1, row - 1)

  ``TOTAL_OUTLINES`` is wrong in a few files, so outlines are read by keyword, not count.
  Normal cases have no overlay files.

Case names: folder names (``case0029``) repeat across volumes; the ``.ics`` name does not,
so a case is named by it with underscores (``A_0001_1``) and its patient id is
``DDSM_A_0001_1``.

Output: per image a 16-bit "full mammogram images" series, and per usable abnormality one
"ROI mask images" series holding the crop (outline bounding box plus a margin) and the
binary mask (filled BOUNDARY outline, 0/255, full size); case-description rows with
``dataset`` = ``ddsm``. An image with mass and calcification findings is written once
under each subject (``Mass-…`` and ``Calc-…``), as CBIS-DDSM does. Images of cases without
any overlay (the DDSM normal volumes) are NORMAL; the unmarked breast of a case with
findings is not, as no follow-up verified it, and is skipped. UNPROVEN abnormalities,
unknown lesion types and undecodable images are skipped too, each with a reason (counted
in the summary, listed in ``ddsm_skipped.csv``). An outline that falls outside its image
leaves the image with its pathology but without ROI paths.

Modules: :mod:`~mammocad.sources.ddsm.ics` and :mod:`~mammocad.sources.ddsm.overlay` parse
the text files, :mod:`mammocad.codecs.ljpeg` decodes the images,
:mod:`~mammocad.sources.ddsm.cases` decides what of a case is used,
:mod:`~mammocad.sources.ddsm.write` writes one image's series and
:mod:`~mammocad.sources.ddsm.fetch` runs the source.
"""

from mammocad.codecs.ljpeg import LjpegError, decode_ljpeg
from mammocad.sources.ddsm.fetch import (
    SKIPPED_COLUMNS,
    SUMMARY_SKIPS,
    DdsmConfig,
    fetch_ddsm,
    split_patients,
)
from mammocad.sources.ddsm.ics import IcsImage, IcsInfo, read_ics
from mammocad.sources.ddsm.overlay import (
    CHAIN_STEPS,
    Abnormality,
    LesionType,
    Outline,
    abnormality_mask,
    chain_to_mask,
    chain_to_points,
    parse_overlay,
)
from mammocad.sources.ddsm.write import DATASET, to_uint16

__all__ = [
    "CHAIN_STEPS",
    "DATASET",
    "SKIPPED_COLUMNS",
    "SUMMARY_SKIPS",
    "Abnormality",
    "DdsmConfig",
    "IcsImage",
    "IcsInfo",
    "LesionType",
    "LjpegError",
    "Outline",
    "abnormality_mask",
    "chain_to_mask",
    "chain_to_points",
    "decode_ljpeg",
    "fetch_ddsm",
    "parse_overlay",
    "read_ics",
    "split_patients",
    "to_uint16",
]
