"""Synthetic CBIS-DDSM: an offline data source with the real collection's layout and quirks.

The pipeline reproduces Ansar et al., whose models read CBIS-DDSM (paper §3.1: full
mammograms for the normal-vs-cancerous shallow CNN, lesion ROIs for the benign-vs-malignant
transfer-learning models). The real collection is about 164 GB behind a web API, so the
default source generates a small stand-in that every later stage reads exactly as it would
read a TCIA download:

* ``csv/`` holds the four case-description files with the real columns (the calc files spell
  ``breast density``), real vocabularies and real quirks: stray whitespace and newlines inside
  path cells, crop and mask columns swapped on some rows, CSV paths that name
  ``<subject>/<StudyUID>/<SeriesUID>/00000N.dcm`` while the files on disk live under NBIA
  retriever folder names. Two ``normal_*`` files extend the layout with lesion-free images.
* ``CBIS-DDSM/`` holds Secondary Capture DICOMs: 16-bit MONOCHROME2 full mammograms and, per
  abnormality, one "ROI mask images" series with a full-size 8-bit binary mask and a 16-bit
  cropped ROI in no reliable order.

The images are built to look to the code like scanned-film mammograms: a dark background,
a breast that fills out from the chest wall with a thickness fall-off and a faint skin line,
fibroglandular texture that is denser near the chest wall and streams toward the nipple, a
pectoral muscle on MLO views, occasional film labels, masses whose shape and margin follow
their BI-RADS descriptors (benign: oval or round, circumscribed; malignant: irregular,
spiculated, and denser; a share ``style_crossover`` of each borrows the other look) and
clusters of calcifications.

Reproducibility: the discrete design (splits, breast kinds, pathologies, quirks) is drawn
from ``default_rng([seed, 0])`` in the calling process; each patient ``P_0000n`` draws its
images from ``default_rng([seed, n])``, so the output is byte-identical for a seed whatever
the worker count. UIDs are hashes of the seed and the file's role, never of the clock.

Modules: :mod:`~mammocad.sources.synthetic.design` (settings and the drawn design), :mod:`~mammocad.sources.synthetic.noise`,
:mod:`~mammocad.sources.synthetic.anatomy` (breast and background), :mod:`~mammocad.sources.synthetic.lesions` (masses and
calcifications), :mod:`~mammocad.sources.synthetic.view` (one full mammogram), :mod:`~mammocad.sources.synthetic.patient` (one
patient's files and rows) and :mod:`~mammocad.sources.synthetic.dataset` (the source).
"""

from mammocad.sources.synthetic.dataset import (
    RETRIEVER_METADATA_COLUMNS,
    generate_synthetic,
    write_retriever_download,
)
from mammocad.sources.synthetic.design import SyntheticConfig
from mammocad.sources.synthetic.patient import ASPECT

__all__ = [
    "ASPECT",
    "RETRIEVER_METADATA_COLUMNS",
    "SyntheticConfig",
    "generate_synthetic",
    "write_retriever_download",
]
