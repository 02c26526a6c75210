"""The manifest: the contract between ``convert`` and every later stage.

This module holds, once, the vocabularies the manifest's cells take (kinds, pathologies,
abnormality types, views, lateralities) and the severity order of pathologies that every
"worst finding of a patient or image" uses.
"""

from __future__ import annotations

from collections.abc import Iterable

#: ``kind``: a full mammogram or a region of interest cropped from one.
KINDS: tuple[str, ...] = ("full", "roi")
#: ``pathology``: the class every stage after ``convert`` sees.
PATHOLOGIES: tuple[str, ...] = ("NORMAL", "BENIGN", "MALIGNANT")
#: ``abnormality_type`` of a finding (full images without one are ``normal``).
ABNORMALITY_TYPES: tuple[str, ...] = ("mass", "calcification", "normal")
#: ``view``: craniocaudal or mediolateral oblique.
VIEWS: tuple[str, ...] = ("CC", "MLO")
#: ``laterality``: the breast.
LATERALITIES: tuple[str, ...] = ("LEFT", "RIGHT")

#: Severity of every pathology a source or the manifest may name: NORMAL < BENIGN (with
#: or without callback) < MALIGNANT. The one order behind each "worst finding".
SEVERITY: dict[str, int] = {
    "NORMAL": 0,
    "BENIGN_WITHOUT_CALLBACK": 1,
    "BENIGN": 1,
    "MALIGNANT": 2,
}
#: Raw pathology (CBIS-DDSM's, DDSM's) → the manifest's class in :data:`PATHOLOGIES`.
PATHOLOGY_CLASS: dict[str, str] = {
    "BENIGN": "BENIGN",
    "BENIGN_WITHOUT_CALLBACK": "BENIGN",
    "MALIGNANT": "MALIGNANT",
    "NORMAL": "NORMAL",
}


def worst(pathologies: Iterable[str]) -> str:
    """The most severe of some pathologies (the first of equally severe ones).

    Raises:
        KeyError: for a value not in :data:`SEVERITY`.
        ValueError: for no values.
    """
    return max(pathologies, key=SEVERITY.__getitem__)
