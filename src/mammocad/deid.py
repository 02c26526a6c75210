"""De-identification of the DICOM files a source writes into ``data/raw``.

``data/raw`` is a DVC output: ``dvc push`` copies it to a remote, so no identifying field
may be in it. Every source therefore writes its DICOM files through :func:`deidentify`
(generated files, see :func:`mammocad.sources.layout.write_secondary_capture`) or
:func:`install_file` (downloaded files, copied clean where needed, hard-linked where
already clean); the files a user or a download cache holds are never modified.

The profile is the DICOM PS3.15 Annex E *Basic Application Level Confidentiality
Profile* with three of its standard options, which the pipeline needs:

* **Retain UIDs** (E.3.9): case descriptions join files by SeriesInstanceUID;
* **Retain Longitudinal Temporal Information with Full Dates** (E.3.6): study dates name
  the NBIA study folders (CBIS-DDSM's dates are already shifted by TCIA);
* **Retain Patient Characteristics** (E.3.7), narrowed: sex, age, size and weight are
  kept; the other characteristics the option would keep (ethnic group, occupation,
  additional patient history and the like) are removed, since nothing downstream reads
  them and they identify a person more than they describe a breast.

``PatientID`` holds the data set's subject id (``Mass-Training_P_00001_LEFT_CC``), which
is a pseudonym for public sets; for ``local`` it is the labels' ``patient_id``, which the
README asks to be a pseudonym. Every attribute of :data:`REMOVED` is removed (or emptied
where the standard makes it type 2), in nested sequences too, private attributes are
removed, and ``PatientIdentityRemoved`` = ``YES`` with ``DeidentificationMethod`` =
:data:`PROFILE` is added.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

log = logging.getLogger(__name__)

#: Recorded in DeidentificationMethod (0012,0063) of every file written.
PROFILE = "DICOM PS3.15 Basic Profile, Retain UIDs/Dates/Characteristics"  # LO: <= 64

#: Type 2 attributes of the Secondary Capture IOD: emptied, not removed (action Z).
EMPTIED: tuple[str, ...] = (
    "PatientName",
    "PatientBirthDate",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
)
#: Attributes of PS3.15 Table E.1-1 that can identify a person or place and that the
#: options above do not retain (actions X, Z, D; U actions on UIDs are retained).
REMOVED: tuple[str, ...] = (
    *EMPTIED,
    "PatientBirthTime",
    "PatientBirthName",
    "PatientMotherBirthName",
    "OtherPatientIDs",
    "OtherPatientNames",
    "OtherPatientIDsSequence",
    "IssuerOfPatientID",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "CountryOfResidence",
    "RegionOfResidence",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "PatientReligiousPreference",
    "AdditionalPatientHistory",
    "PatientComments",
    "PatientInsurancePlanCodeSequence",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionCodeSequence",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence",
    "RequestingPhysician",
    "OperatorsName",
    "OperatorIdentificationSequence",
    "ScheduledPerformingPhysicianName",
    "ContentCreatorName",
    "StationName",
    "DeviceSerialNumber",
    "PerformedProcedureStepID",
    "ScheduledProcedureStepID",
    "RequestedProcedureID",
    "AdmissionID",
    "RequestAttributesSequence",
    "ReferencedPatientSequence",
    "ImageComments",
    "StudyComments",
    "InterpretationAuthor",
    "VerifyingObserverName",
    "PersonName",
)


def _scrub(ds: Dataset, changed: list[str]) -> None:
    for keyword in REMOVED:
        if keyword not in ds:
            continue
        value = ds.data_element(keyword).value
        if keyword in EMPTIED:
            if value not in (None, "", b""):
                setattr(ds, keyword, "")
                changed.append(keyword)
        else:
            del ds[keyword]
            changed.append(keyword)
    for element in list(ds):
        if element.tag.is_private:
            del ds[element.tag]
            changed.append(str(element.tag))
        elif element.VR == "SQ":
            for item in element.value:
                _scrub(item, changed)


def deidentify(ds: Dataset) -> list[str]:
    """Applies :data:`PROFILE` to ``ds`` in place.

    Returns:
        The keywords (or private tags) whose values were removed or emptied; empty when
        ``ds`` was already clean. The two marker attributes are set either way.
    """
    changed: list[str] = []
    _scrub(ds, changed)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = PROFILE
    return changed


def identifying_fields(ds: Dataset) -> list[str]:
    """The attributes :func:`deidentify` would remove or empty (``ds`` is not changed)."""
    return deidentify(ds.copy())


def install_file(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Puts a de-identified ``src`` at ``dst``; ``src`` is never modified.

    A DICOM file already clean (and any non-DICOM file) is hard-linked, or copied across
    file systems; one holding identifying fields is written as a clean copy.

    Returns:
        Whether a cleaned copy was written.
    """
    src, dst = Path(src), Path(dst)
    try:
        header = pydicom.dcmread(src, stop_before_pixels=True)
        dirty = bool(identifying_fields(header))
    except (InvalidDicomError, OSError, ValueError, EOFError):
        dirty = False  # not DICOM (or unreadable): convert reports it; nothing to clean
    if dirty:
        ds = pydicom.dcmread(src)
        deidentify(ds)
        ds.save_as(dst, enforce_file_format=False)
        return True
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return False
