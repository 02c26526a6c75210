"""Reading mammography DICOM files into 16-bit greyscale arrays.

:mod:`mammocad.dicom.header` reads and checks the header (which files are usable
mammograms; the fields that may reach an output); :mod:`mammocad.dicom.pixels` decodes the
pixel data into the pipeline's ``uint16`` representation.

Anything that is not a usable single-frame greyscale mammogram raises :class:`SkipImage`
with a one-line reason; no pydicom or numpy exception escapes for a bad file.
"""

from mammocad.dicom.header import (
    SAFE_FIELDS,
    HeaderInfo,
    SkipImage,
    check_greyscale_2d,
    check_mammogram,
    read_header,
    read_header_dataset,
)
from mammocad.dicom.pixels import UINT16_MAX, DicomImage, decode_array, read_pixels, to_uint16

__all__ = [
    "SAFE_FIELDS",
    "UINT16_MAX",
    "DicomImage",
    "HeaderInfo",
    "SkipImage",
    "check_greyscale_2d",
    "check_mammogram",
    "decode_array",
    "read_header",
    "read_header_dataset",
    "read_pixels",
    "to_uint16",
]
