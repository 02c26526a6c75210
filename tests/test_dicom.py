"""Tests for mammocad.dicom: value tables of the uint16 mapping, decoders, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import make_dataset, save, to_jpeg_lossless
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless

from mammocad.dicom import (
    SAFE_FIELDS,
    DicomImage,
    HeaderInfo,
    SkipImage,
    decode_array,
    read_header,
    read_pixels,
)


def _write(tmp_path: Path, pixels: np.ndarray, name: str = "x.dcm", **kwargs) -> Path:
    return save(make_dataset(pixels, **kwargs), tmp_path / name)


def _row(values, dtype) -> np.ndarray:
    return np.array([values], dtype=dtype)


def _testdata(name: str) -> str:
    # get_testdata_files only looks at local files; get_testdata_file may try a download.
    paths = get_testdata_files(name)
    if not paths:  # pragma: no cover - the files ship inside the pydicom wheel
        pytest.skip(f"pydicom test file {name} not shipped with this pydicom")
    return paths[0]


# --- value tables ---------------------------------------------------------------------------

VALUE_TABLE = [
    # (id, stored values, dtype, make_dataset kwargs, expected uint16)
    ("8bit_x257", [0, 1, 128, 255], np.uint8, {}, [0, 257, 32896, 65535]),
    ("12bit", [0, 1, 2048, 4095], np.uint16, {"bits_stored": 12}, [0, 16, 32776, 65535]),
    ("16bit_identity", [0, 1, 40000, 65535], np.uint16, {}, [0, 1, 40000, 65535]),
    ("signed16", [-32768, -1, 0, 32767], np.int16, {}, [0, 32767, 32768, 65535]),
    ("signed12", [-2048, -1, 0, 2047], np.int16, {"bits_stored": 12}, [0, 32759, 32776, 65535]),
    (
        "mono1_8bit",
        [0, 100, 255],
        np.uint8,
        {"photometric": "MONOCHROME1"},
        [65535, 39835, 0],
    ),
    (
        "mono1_16bit",
        [0, 1000, 65535],
        np.uint16,
        {"photometric": "MONOCHROME1"},
        [65535, 64535, 0],
    ),
    # Without a window a positive rescale is linear and so invisible after stretching.
    (
        "rescale_no_voi",
        [0, 1000, 65535],
        np.uint16,
        {"RescaleSlope": 2, "RescaleIntercept": -100},
        [0, 1000, 65535],
    ),
    # A negative slope reverses the output units, hence the rendering.
    (
        "rescale_negative_slope",
        [0, 1000, 65535],
        np.uint16,
        {"RescaleSlope": -1, "RescaleIntercept": 0},
        [65535, 64535, 0],
    ),
    # Window in rescaled units: x = 2*v - 1000; LINEAR_EXACT c=1000 w=2000 maps 0..2000.
    (
        "rescale_then_window",
        [0, 500, 750, 1250, 1600],
        np.uint16,
        {
            "bits_stored": 12,
            "RescaleSlope": 2,
            "RescaleIntercept": -1000,
            "WindowCenter": 1000,
            "WindowWidth": 2000,
            "VOILUTFunction": "LINEAR_EXACT",
        },
        [0, 0, 16384, 49151, 65535],
    ),
    # LINEAR (default function): c=1024 w=1024 → 0 at x <= 512, 65535 above 1535.
    (
        "window_linear",
        [0, 512, 513, 1024, 1535, 1536, 65535],
        np.uint16,
        {"WindowCenter": 1024, "WindowWidth": 1024},
        [0, 0, 64, 32800, 65535, 65535, 65535],
    ),
    # A window spanning the stored range equals the plain 12-bit stretch.
    (
        "window_full_range",
        [0, 1, 2048, 4095],
        np.uint16,
        {"bits_stored": 12, "WindowCenter": 2048, "WindowWidth": 4096},
        [0, 16, 32776, 65535],
    ),
    # VOI is applied before the MONOCHROME1 inversion.
    (
        "window_then_mono1",
        [0, 750, 1250, 4095],
        np.uint16,
        {
            "bits_stored": 12,
            "photometric": "MONOCHROME1",
            "WindowCenter": 1000,
            "WindowWidth": 1000,
            "VOILUTFunction": "LINEAR_EXACT",
        },
        [65535, 49151, 16384, 0],
    ),
]


@pytest.mark.parametrize(
    ("values", "dtype", "kwargs", "expected"),
    [case[1:] for case in VALUE_TABLE],
    ids=[case[0] for case in VALUE_TABLE],
)
def test_read_pixels_value_table(tmp_path, values, dtype, kwargs, expected):
    path = _write(tmp_path, _row(values, dtype), **kwargs)
    image = read_pixels(path)
    assert image.pixels.dtype == np.uint16
    assert image.pixels.ndim == 2
    np.testing.assert_array_equal(image.pixels, _row(expected, np.uint16))
    assert image.voi_applied == ("WindowCenter" in kwargs)


def _voi_lut_dataset(pixels: np.ndarray) -> pydicom.Dataset:
    ds = make_dataset(pixels)
    item = Dataset()
    item.add(DataElement(0x00283002, "US", [4, 0, 8]))  # 4 entries from 0, 8-bit output
    item.add(DataElement(0x00283006, "US", [0, 100, 200, 255]))
    ds.VOILUTSequence = Sequence([item])
    return ds


def test_voi_lut_sequence_is_applied_and_stretched(tmp_path):
    # Inputs past the last entry take the last value; an 8-bit LUT output is ×257.
    path = save(_voi_lut_dataset(_row([0, 1, 2, 3, 7], np.uint16)), tmp_path / "lut.dcm")
    image = read_pixels(path)
    assert image.voi_applied
    np.testing.assert_array_equal(image.pixels, _row([0, 25700, 51400, 65535, 65535], np.uint16))


def test_voi_can_be_disabled(tmp_path):
    path = save(_voi_lut_dataset(_row([0, 1, 2, 3, 7], np.uint16)), tmp_path / "lut.dcm")
    image = read_pixels(path, apply_voi=False)
    assert not image.voi_applied
    np.testing.assert_array_equal(image.pixels, _row([0, 1, 2, 3, 7], np.uint16))


def test_unusable_window_falls_back_to_full_range(tmp_path):
    path = _write(tmp_path, _row([0, 65535], np.uint16), WindowCenter=10, WindowWidth=0)
    image = read_pixels(path)
    assert not image.voi_applied
    np.testing.assert_array_equal(image.pixels, _row([0, 65535], np.uint16))


# --- compressed transfer syntaxes -----------------------------------------------------------


@pytest.fixture
def noise16() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 65536, size=(64, 48), dtype=np.uint16)


def test_rle_lossless_round_trip(tmp_path, noise16):
    ds = make_dataset(noise16)
    ds.compress(RLELossless, noise16)
    path = save(ds, tmp_path / "rle.dcm")
    image = read_pixels(path)
    assert image.header.transfer_syntax == RLELossless
    np.testing.assert_array_equal(image.pixels, noise16)


def test_jpeg2000_lossless_round_trip(tmp_path, noise16):
    ds = make_dataset(noise16)
    ds.compress(JPEG2000Lossless, noise16, encoding_plugin="pylibjpeg")
    path = save(ds, tmp_path / "j2k.dcm")
    image = read_pixels(path)
    assert image.header.transfer_syntax == JPEG2000Lossless
    np.testing.assert_array_equal(image.pixels, noise16)


@pytest.mark.parametrize("bits", [16, 12])
def test_jpeg_lossless_process14_decodes(tmp_path, bits):
    rng = np.random.default_rng(bits)
    stored = rng.integers(0, 2**bits, size=(40, 56), dtype=np.uint16)
    ds = to_jpeg_lossless(make_dataset(stored, bits_stored=bits), stored)
    path = save(ds, tmp_path / "jpll.dcm")
    image = read_pixels(path)
    assert image.header.transfer_syntax == "1.2.840.10008.1.2.4.70"
    expected = np.rint(stored.astype(np.int64) * 65535 / (2**bits - 1)).astype(np.uint16)
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.bits_stored == bits


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_pydicom_compressed_files_match_uncompressed(name):
    # Real files from other encoders (signed 16-bit MR): same pixels as the native copy.
    reference = read_pixels(_testdata("MR_small.dcm"), expect_mammogram=False)
    image = read_pixels(_testdata(name), expect_mammogram=False)
    np.testing.assert_array_equal(image.pixels, reference.pixels)


def test_pydicom_jpeg_lossless_file_decodes():
    # The only process-14 file shipped with pydicom is RGB: it decodes, and is refused.
    path = _testdata("SC_rgb_jpeg_gdcm.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    arr = decode_array(ds)
    assert arr.shape == (100, 100, 3)
    reference = pydicom.dcmread(_testdata("SC_rgb_rle.dcm")).pixel_array  # lossless too
    np.testing.assert_array_equal(arr, reference)
    with pytest.raises(SkipImage, match=r"^not greyscale: SamplesPerPixel 3"):
        read_pixels(path, expect_mammogram=False)


# --- files to skip --------------------------------------------------------------------------


def _valid_bytes(tmp_path: Path) -> bytes:
    path = _write(tmp_path, np.arange(64 * 48, dtype=np.uint16).reshape(64, 48), "ok.dcm")
    return path.read_bytes()


def test_truncated_pixel_data(tmp_path):
    data = _valid_bytes(tmp_path)
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) - 1000])
    read_header(path)  # the header is intact
    with pytest.raises(SkipImage, match=r"^undecodable pixel data: "):
        read_pixels(path)


def test_truncated_compressed_data(tmp_path, noise16):
    ds = make_dataset(noise16)
    ds.compress(RLELossless, noise16)
    data = save(ds, tmp_path / "rle.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) - 3000])
    with pytest.raises(SkipImage, match=r"^undecodable pixel data: "):
        read_pixels(path)


def test_any_truncation_raises_only_skipimage(tmp_path):
    """Every cut of a valid file is refused with a one-line reason; none is accepted."""
    data = _valid_bytes(tmp_path)
    kinds = set()
    for cut in range(0, len(data), 97):
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(SkipImage) as info:
            read_pixels(path)
        reason = info.value.reason
        assert reason and "\n" not in reason, cut
        kinds.add(reason.split(":")[0])
    # cuts in the preamble, the header and the pixel data each get their own reason
    assert kinds == {
        "not a DICOM file",
        "not a DICOM image",
        "no pixel data",
        "undecodable pixel data",
    }


def test_text_file_named_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("patient list\nnot an image\n")
    for reader in (read_header, read_pixels):
        with pytest.raises(SkipImage, match=r"^not a DICOM file: "):
            reader(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(SkipImage, match=r"^not a DICOM file: empty file$"):
        read_header(path)


def test_no_pixel_data(tmp_path):
    ds = make_dataset(np.zeros((8, 8), np.uint16))
    del ds.PixelData
    path = save(ds, tmp_path / "nopix.dcm")
    assert read_header(path).rows == 8
    with pytest.raises(SkipImage, match=r"^no pixel data$"):
        read_pixels(path)


@pytest.mark.parametrize(("name", "modality"), [("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")])
def test_other_modalities_are_not_mammograms(name, modality):
    with pytest.raises(SkipImage) as info:
        read_pixels(_testdata(name))
    assert info.value.reason == f"not a mammogram: modality {modality}"
    # Decodable all the same when the caller does not insist on a mammogram.
    assert read_pixels(_testdata(name), expect_mammogram=False).pixels.dtype == np.uint16


@pytest.mark.parametrize(
    ("modality", "body_part", "description", "accepted"),
    [
        ("MG", None, "anything", True),
        ("OT", "BREAST", "anything", True),
        (None, "BREAST", "anything", True),
        ("OT", None, "cropped images", True),
        (None, None, "ROI mask images", True),
        (None, None, "full mammogram images", True),
        ("OT", None, "scanned form", False),
        (None, "CHEST", "", False),
        ("US", "BREAST", "breast ultrasound", False),
        ("CT", None, "mammogram", False),
    ],
)
def test_mammogram_acceptance(tmp_path, modality, body_part, description, accepted):
    path = _write(
        tmp_path,
        np.zeros((4, 4), np.uint16),
        modality=modality,
        body_part=body_part,
        series_description=description,
    )
    if accepted:
        read_pixels(path)
    else:
        with pytest.raises(SkipImage, match=r"^not a mammogram: modality "):
            read_pixels(path)


def test_colour_and_multiframe_are_refused(tmp_path):
    rgb = _write(tmp_path, np.zeros((4, 4, 3), np.uint8), "rgb.dcm")
    with pytest.raises(SkipImage, match=r"^not greyscale: SamplesPerPixel 3, .* RGB$"):
        read_pixels(rgb)
    ds = make_dataset(np.zeros((8, 4), np.uint16))  # two 4x4 frames
    ds.Rows, ds.NumberOfFrames = 4, 2
    volume = save(ds, tmp_path / "volume.dcm")
    with pytest.raises(SkipImage, match=r"^multi-frame volume: 2 frames$"):
        read_pixels(volume)


def test_corrupt_compressed_stream(tmp_path, noise16):
    ds = make_dataset(noise16)
    ds.compress(JPEG2000Lossless, noise16, encoding_plugin="pylibjpeg")
    path = save(ds, tmp_path / "j2k.dcm")
    data = bytearray(path.read_bytes())
    start = data.find(b"\xff\x4f\xff\x51")  # J2K codestream start
    data[start + 200 : start + 400] = b"\x00" * 200
    data[start : start + 4] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(data))
    with pytest.raises(SkipImage, match=r"^undecodable pixel data: "):
        read_pixels(path)


# --- header and privacy ---------------------------------------------------------------------


def test_read_header_fields(tmp_path):
    path = _write(
        tmp_path,
        np.zeros((6, 5), np.uint16),
        bits_stored=12,
        series_uid="1.2.3.4",
        patient_id="Mass-Training_P_00001_LEFT_CC",
        instance_number=2,
    )
    header = read_header(path)
    assert isinstance(header, HeaderInfo)
    assert (header.series_uid, header.rows, header.columns) == ("1.2.3.4", 6, 5)
    assert (header.modality, header.photometric, header.bits_stored) == ("MG", "MONOCHROME2", 12)
    assert header.samples_per_pixel == 1 and header.instance_number == 2
    assert header.patient_id == "Mass-Training_P_00001_LEFT_CC"


def test_only_safe_fields_leave_the_module(tmp_path):
    path = _write(tmp_path, np.zeros((6, 5), np.uint16), patient_id="SECRET_ID")
    image = read_pixels(path)
    assert isinstance(image, DicomImage)
    safe = image.header.safe_dict()
    assert set(safe) == set(SAFE_FIELDS)
    assert "patient_id" not in SAFE_FIELDS
    assert "SECRET" not in repr(safe)
    # Names, birth dates, accession numbers are never read into the objects at all.
    text = repr(image.header)
    for secret in ("SECRET^NAME", "19450317", "SECRETACC1", "SECRET HOSPITAL"):
        assert secret not in text


def test_reads_bare_datasets_without_preamble(tmp_path):
    # Some archives write bare datasets (no preamble, no file meta, no .dcm suffix).
    pixels = np.arange(20, dtype=np.uint16).reshape(4, 5)
    ds = make_dataset(pixels, series_uid="1.2.3.5")
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    path = tmp_path / "IM000001"
    ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert path.read_bytes()[:2] == b"\x08\x00"
    assert read_header(path).series_uid == "1.2.3.5"
    np.testing.assert_array_equal(read_pixels(path).pixels, pixels)
