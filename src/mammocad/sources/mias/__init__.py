"""The ``mias`` source: the mini-MIAS database wrapped into the CBIS-DDSM layout.

mini-MIAS (J Suckling et al. 1994, "The Mammographic Image Analysis Society Digital
Mammogram Database", Excerpta Medica International Congress Series 1069 pp 375-378) holds
322 digitised films as 8-bit binary PGMs (P5) of 1024 x 1024 pixels at 200 microns, and one
``Info.txt`` that describes them. It is distributed as ``all-mias.tar.gz`` by the Pilot
European Image Processing Archive, for research use only (see its ``Licence.txt``); any
publication must cite the reference above.

The paper reproduced here reads CBIS-DDSM (paper §3.1). Every later stage reads the
CBIS-DDSM layout only, so this source wraps each film into uncompressed Secondary Capture
DICOMs and writes the case-description CSVs that ``convert`` expects:

* per film, a "full mammogram images" series (8-bit, the PGM's pixel values unchanged);
* per lesion with coordinates, one "ROI mask images" series holding a square crop around
  the lesion (``000000.dcm``, InstanceNumber 1) and a full-size disc mask (0/255,
  ``000001.dcm``, InstanceNumber 2);
* per lesion without coordinates, a CSV row with empty crop and mask paths, so the full
  image keeps its pathology while ``convert`` records the ROI as skipped;
* per normal film, a row of the ``normal_*`` files.

``Info.txt`` rows read ``ref tissue class [severity x y radius]``. The coordinates are in
pixels with the origin at the BOTTOM-LEFT corner of the image, so the image row of a centre
is ``height - y`` (``1024 - y`` for every mini-MIAS film) and its column is ``x``. A film
may have several rows (several lesions). Some rows give no coordinates: calcifications
"widely distributed throughout the image" (note 4 of ``Info.txt``; three such rows say
``*NOTE 3*`` where the coordinates would be) and one circumscribed mass (``mdb059``).

Films come in pairs, one patient per pair (``mdb001`` + ``mdb002`` is patient 1, written
``MIAS_P_001``): odd numbers are right breasts, even numbers left ones. Every mini-MIAS
film is a medio-lateral oblique (MLO) view: the database holds one film per breast, and the
pectoral muscle shows on all of them.

Labels, mapped onto CBIS-DDSM's vocabulary:

======  ==================  =========================  =================================
class   CSV file            mass shape / calc type      mass margins / calc distribution
======  ==================  =========================  =================================
CIRC    mass                OVAL                        CIRCUMSCRIBED
SPIC    mass                IRREGULAR                   SPICULATED
MISC    mass                IRREGULAR                   ILL_DEFINED
ARCH    mass                ARCHITECTURAL_DISTORTION    ILL_DEFINED
ASYM    mass                ASYMMETRIC_BREAST_TISSUE    ILL_DEFINED
CALC    calc                (blank)                     CLUSTERED, or DIFFUSELY_SCATTERED
                                                        when the row has no coordinates
NORM    normal              -                           -
======  ==================  =========================  =================================

mini-MIAS names the margin of a mass (circumscribed, spiculated, ill-defined) but not its
shape; the shape column carries CBIS-DDSM's usual companion of that margin (OVAL for
circumscribed, IRREGULAR otherwise) and the distortion and asymmetry classes their own
CBIS-DDSM shape words. Calcification rows with coordinates describe clusters (note 3 of
``Info.txt``); the others widely distributed calcifications (note 4). Severity B → BENIGN,
M → MALIGNANT, per lesion; NORM → NORMAL. Background tissue F (fatty), G (fatty-glandular),
D (dense-glandular) → breast density 1, 2, 3: mini-MIAS has three classes where BI-RADS has
four, and dense-glandular is read as BI-RADS 3 (heterogeneously dense) because nothing in
``Info.txt`` singles out extremely dense breasts. BI-RADS assessment and subtlety are not
part of mini-MIAS and are left blank.

mini-MIAS has no official train/test split. Patients are assigned to the ``*_test_set``
files by a seeded draw over every patient ``Info.txt`` lists, stratified by the patient's
worst pathology (normal, benign, malignant), so a subset of the films (as the 60-film
sample) lands in the same files as in the full archive.

Modules: :mod:`~mammocad.sources.mias.info` (``Info.txt``, labels, split),
:mod:`~mammocad.sources.mias.archive` (download and unpacking), :mod:`mammocad.codecs.pgm`
(the films), :mod:`~mammocad.sources.mias.film` (one film's series) and
:mod:`~mammocad.sources.mias.fetch` (the source).
"""

from mammocad.codecs.pgm import PgmError, read_pgm
from mammocad.sources.mias.archive import (
    MIAS_URL,
    TIMEOUT_S,
    download_archive,
    extract_archive,
)
from mammocad.sources.mias.fetch import MiasConfig, fetch_mias
from mammocad.sources.mias.film import DATASET, MIN_HALF_SIDE, VIEW, disc_mask, roi_half_side
from mammocad.sources.mias.info import (
    BREAST_DENSITY,
    CALC_DISTRIBUTION,
    CLASSES,
    IMAGE_SIZE,
    MASS_DESCRIPTORS,
    SEVERITIES,
    TISSUES,
    MiasRow,
    parse_info,
    patient_id,
    split_patients,
)

__all__ = [
    "BREAST_DENSITY",
    "CALC_DISTRIBUTION",
    "CLASSES",
    "DATASET",
    "IMAGE_SIZE",
    "MASS_DESCRIPTORS",
    "MIAS_URL",
    "MIN_HALF_SIDE",
    "SEVERITIES",
    "TIMEOUT_S",
    "TISSUES",
    "VIEW",
    "MiasConfig",
    "MiasRow",
    "PgmError",
    "disc_mask",
    "download_archive",
    "extract_archive",
    "fetch_mias",
    "parse_info",
    "patient_id",
    "read_pgm",
    "roi_half_side",
    "split_patients",
]
