"""Tests of the DDSM source: .ics and overlay parsers, chain codes, LJPEG decoding, fetch."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ddsm_factory import (
    abnormality_text,
    encode_lossless,
    overlay_text,
    pvrg_variant,
    smooth_image,
    square_chain,
    write_case,
)
from dicom_factory import encode_jpeg_lossless

from mammocad.codecs.ljpeg import LjpegError, decode_ljpeg
from mammocad.convert import convert_dataset
from mammocad.io import read_png
from mammocad.sources.ddsm import (
    DdsmConfig,
    chain_to_mask,
    chain_to_points,
    fetch_ddsm,
    parse_overlay,
    read_ics,
    split_patients,
    to_uint16,
)

# --------------------------------------------------------------------------------------
# .ics


ICS = """ics_version 1.0
filename B-3189-1
DATE_OF_STUDY 11 4 98
PATIENT_AGE 65
FILM
FILM_TYPE REGULAR
DENSITY 2
DATE_DIGITIZED 4 14 1999
DIGITIZER LUMISYS LASER
SELECTED
SEQUENCE
LEFT_CC LINES 4616 PIXELS_PER_LINE 3112 BITS_PER_PIXEL 12 RESOLUTION 50 NON_OVERLAY
LEFT_MLO LINES 4648 PIXELS_PER_LINE 3080 BITS_PER_PIXEL 12 RESOLUTION 50 NON_OVERLAY
  right_cc   lines 4696 pixels_per_line 3024 bits_per_pixel 16 resolution 43.5 OVERLAY
RIGHT_MLO LINES 4720 PIXELS_PER_LINE 3000 BITS_PER_PIXEL 12 OVERLAY
"""


def test_read_ics_values(tmp_path: Path) -> None:
    path = tmp_path / "B-3189-1.ics"
    path.write_text(ICS)
    info = read_ics(path)
    assert (info.filename, info.case_name) == ("B-3189-1", "B_3189_1")
    assert (info.patient_age, info.density, info.date_of_study) == (65, 2, "19981104")
    assert (info.digitizer, info.film_type) == ("LUMISYS LASER", "REGULAR")
    table = {
        view: (i.lines, i.pixels_per_line, i.bits_per_pixel, i.resolution, i.overlay)
        for view, i in info.images.items()
    }
    assert table == {
        "LEFT_CC": (4616, 3112, 12, 50.0, False),
        "LEFT_MLO": (4648, 3080, 12, 50.0, False),
        "RIGHT_CC": (4696, 3024, 16, 43.5, True),
        "RIGHT_MLO": (4720, 3000, 12, None, True),
    }


def test_read_ics_defaults_and_errors(tmp_path: Path) -> None:
    sparse = tmp_path / "A-0005-1.ics"
    sparse.write_text("SEQUENCE\nLEFT_CC LINES 10 PIXELS_PER_LINE 8 BITS_PER_PIXEL 12\n")
    info = read_ics(sparse)
    assert (info.filename, info.case_name) == ("A-0005-1", "A_0005_1")
    assert (info.patient_age, info.density, info.date_of_study) == (None, None, "")
    assert info.images["LEFT_CC"].overlay is False

    bad = tmp_path / "bad.ics"
    bad.write_text("filename X-1\nLEFT_CC LINES 10 BITS_PER_PIXEL 12 OVERLAY\n")
    with pytest.raises(
        ValueError, match=r"bad\.ics line 2: LEFT_CC lacks a valid PIXELS_PER_LINE"
    ):
        read_ics(bad)
    empty = tmp_path / "empty.ics"
    empty.write_text("filename X-1\nPATIENT_AGE 50\n")
    with pytest.raises(ValueError, match="empty.ics: no image line"):
        read_ics(empty)


# --------------------------------------------------------------------------------------
# overlays and chain codes

OVERLAY = """TOTAL_ABNORMALITIES 2
ABNORMALITY 1
LESION_TYPE MASS SHAPE IRREGULAR-ARCHITECTURAL_DISTORTION MARGINS SPICULATED
ASSESSMENT 5
SUBTLETY 4
PATHOLOGY MALIGNANT
TOTAL_OUTLINES 3
BOUNDARY
10 20 2 2 2 4 4
4 6 6 6 0 0 0 #
CORE
11 21 2 4 6 0 #
ABNORMALITY 2
LESION_TYPE CALCIFICATION TYPE ROUND_AND_REGULAR DISTRIBUTION N/A
LESION_TYPE MASS SHAPE OVAL MARGINS CIRCUMSCRIBED
ASSESSMENT 2
SUBTLETY 5
PATHOLOGY BENIGN_WITHOUT_CALLBACK
TOTAL_OUTLINES 1
BOUNDARY
3 4 4 4 2 2 0 0 6 6 #
"""


def test_parse_overlay(tmp_path: Path) -> None:
    path = tmp_path / "A_0001_1.LEFT_CC.OVERLAY"
    path.write_text(OVERLAY)
    first, second = parse_overlay(path)

    assert (first.number, first.kind, first.pathology) == (1, "mass", "MALIGNANT")
    assert (first.assessment, first.subtlety, first.total_outlines) == (5, 4, 3)
    (lesion,) = first.lesion_types
    assert (lesion.shape, lesion.margins) == ("IRREGULAR-ARCHITECTURAL_DISTORTION", "SPICULATED")
    # TOTAL_OUTLINES says 3, the file holds 2: outlines are read by keyword.
    assert [o.kind for o in first.outlines] == ["BOUNDARY", "CORE"]
    boundary, core = first.outlines
    assert (boundary.start_col, boundary.start_row) == (10, 20)
    assert boundary.codes == (2, 2, 2, 4, 4, 4, 6, 6, 6, 0, 0, 0)  # wrapped over two lines
    assert (core.start_col, core.start_row, core.codes) == (11, 21, (2, 4, 6, 0))
    assert first.boundaries == (boundary,)

    assert (second.number, second.kind, second.pathology) == (
        2,
        "calcification",
        "BENIGN_WITHOUT_CALLBACK",
    )
    calc, mass = second.lesion_types
    assert (calc.shape, calc.margins) == ("ROUND_AND_REGULAR", "NA")  # N/A in CBIS spelling
    assert (mass.kind, mass.shape, mass.margins) == ("mass", "OVAL", "CIRCUMSCRIBED")
    assert (second.assessment, second.subtlety) == (2, 5)
    (outline,) = second.outlines
    assert (outline.start_col, outline.start_row, outline.codes) == (
        3,
        4,
        (4, 4, 2, 2, 0, 0, 6, 6),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ABNORMALITY 1\nBOUNDARY\n1 2 3 9 #\n", "direction 9 not 0-7"),
        ("ABNORMALITY 1\nBOUNDARY\n1 2 3 4\n", "not ended by '#'"),
        ("ABNORMALITY 1\nCORE\n1 #\n", "without a start point"),
        ("ABNORMALITY 1\nBOUNDARY\n1 2 x #\n", "'x' is not an int"),
        ("PATHOLOGY BENIGN\n", "before any ABNORMALITY"),
    ],
)
def test_parse_overlay_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.OVERLAY"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        parse_overlay(path)
    assert "bad.OVERLAY" in str(info.value)


def test_chain_directions() -> None:
    # 0 is north (row - 1), then clockwise in 45° steps (DDSM case description page).
    expected = {
        0: (5, 4),
        1: (6, 4),
        2: (6, 5),
        3: (6, 6),
        4: (5, 6),
        5: (4, 6),
        6: (4, 5),
        7: (4, 4),
    }
    for code, (col, row) in expected.items():
        cols, rows = chain_to_points(5, 5, [code])
        assert (cols.tolist(), rows.tolist()) == ([5, col], [5, row]), code
    cols, rows = chain_to_points(2, 3, [2, 2, 3, 4, 5, 6, 7, 0])
    assert list(zip(cols.tolist(), rows.tolist(), strict=True)) == [
        (2, 3), (3, 3), (4, 3), (5, 4), (5, 5), (4, 6), (3, 6), (2, 5), (2, 4),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="0-7"):
        chain_to_points(0, 0, [8])


def test_chain_to_mask_square_exact() -> None:
    mask = chain_to_mask(2, 3, square_chain(4), (8, 10))
    expected = np.zeros((8, 10), dtype=bool)
    expected[3:7, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    assert mask.dtype == bool


def test_chain_to_mask_diamond_and_clipping() -> None:
    # A diamond: outline and interior filled, nothing else.
    mask = chain_to_mask(4, 1, [3, 3, 3, 5, 5, 5, 7, 7, 7, 1, 1, 1], (9, 9))
    rows, cols = np.mgrid[0:9, 0:9]
    np.testing.assert_array_equal(mask, abs(rows - 4) + abs(cols - 4) <= 3)
    # An outline running over the right and bottom edges is clipped, not an error.
    clipped = chain_to_mask(3, 3, square_chain(6), (5, 5))
    expected = np.zeros((5, 5), dtype=bool)
    expected[3:, 3:] = True
    np.testing.assert_array_equal(clipped, expected)


# --------------------------------------------------------------------------------------
# LJPEG decoding


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("backend", ["python", "libjpeg", "auto"])
@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("shape", [(37, 23), (1, 9), (9, 1), (64, 33)])
def test_decode_round_trip(tmp_path: Path, backend: str, bits: int, shape: tuple) -> None:
    rng = np.random.default_rng(sum(shape) + bits)
    pixels = rng.integers(0, 1 << bits, shape).astype(np.uint16)
    path = _write(tmp_path / "x.LJPEG", encode_jpeg_lossless(pixels, bits))
    out = decode_ljpeg(path, *shape, bits, backend=backend)
    assert out.dtype == np.uint16 and out.shape == shape
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("backend", ["python", "auto"])
def test_decode_difference_category_16(tmp_path: Path, backend: str) -> None:
    # Jumps of exactly 32768 are coded as category 16 with no extra bits.
    pixels = np.array([[0, 32768, 0, 65535, 32767], [32768, 0, 32768, 1, 65535]], np.uint16)
    path = _write(tmp_path / "x.LJPEG", encode_jpeg_lossless(pixels, 16))
    np.testing.assert_array_equal(decode_ljpeg(path, 2, 5, 16, backend=backend), pixels)


@pytest.mark.parametrize("backend", ["python", "libjpeg"])
@pytest.mark.parametrize("predictor", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("restart_rows", [0, 3])
def test_decode_predictors_and_restarts(
    tmp_path: Path, backend: str, predictor: int, restart_rows: int
) -> None:
    pixels = smooth_image(11, 13, 12, seed=predictor)
    pixels[5, 6] = 4095  # a spike: large residuals of both signs around it
    data = encode_lossless(pixels, 12, predictor=predictor, restart_rows=restart_rows)
    path = _write(tmp_path / "x.LJPEG", data)
    np.testing.assert_array_equal(decode_ljpeg(path, 11, 13, 12, backend=backend), pixels)


@pytest.mark.parametrize("backend", ["python", "auto"])
def test_decode_point_transform(tmp_path: Path, backend: str) -> None:
    pixels = smooth_image(10, 12, 12, seed=9) & ~np.uint16(3)  # low 2 bits dropped
    data = encode_lossless(pixels, 12, predictor=1, point_transform=2)
    path = _write(tmp_path / "x.LJPEG", data)
    np.testing.assert_array_equal(decode_ljpeg(path, 10, 12, 12, backend=backend), pixels)


@pytest.mark.parametrize("backend", ["python", "auto"])
@pytest.mark.parametrize(
    "quirks",
    [
        {"drop_soi": True},
        {"drop_eoi": True},
        {"drop_soi": True, "drop_eoi": True},
        {"add_comment": True},
        {"trailing": b"\x00\x00\x1a"},
    ],
    ids=lambda q: "+".join(q),
)
def test_decode_pvrg_quirks(tmp_path: Path, backend: str, quirks: dict) -> None:
    pixels = smooth_image(21, 16, 12, seed=3)
    data = pvrg_variant(encode_jpeg_lossless(pixels, 12), **quirks)
    path = _write(tmp_path / "x.LJPEG", data)
    np.testing.assert_array_equal(decode_ljpeg(path, 21, 16, 12, backend=backend), pixels)


def test_decode_transposed_header_lays_out_the_ics_frame(tmp_path: Path) -> None:
    # PVRG files with the frame's height and width swapped in the header were coded as
    # that (wrong) frame: the pixel sequence is right, the .ics gives the layout.
    pixels = smooth_image(12, 7, 12, seed=4)
    data = encode_jpeg_lossless(pixels.reshape(7, 12), 12)  # header says 7 x 12
    path = _write(tmp_path / "x.LJPEG", data)
    for backend in ("python", "auto"):
        np.testing.assert_array_equal(decode_ljpeg(path, 12, 7, 12, backend=backend), pixels)


def test_decode_without_sof_uses_the_ics_frame(tmp_path: Path) -> None:
    pixels = smooth_image(9, 14, 12, seed=5)
    data = pvrg_variant(encode_jpeg_lossless(pixels, 12), drop_sof=True)
    path = _write(tmp_path / "x.LJPEG", data)
    np.testing.assert_array_equal(decode_ljpeg(path, 9, 14, 12), pixels)


@pytest.mark.parametrize("backend", ["python", "libjpeg", "auto"])
def test_decode_truncated_scan_fails(tmp_path: Path, backend: str) -> None:
    pixels = smooth_image(30, 20, 12, seed=6)
    data = encode_jpeg_lossless(pixels, 12)
    path = _write(tmp_path / "x.LJPEG", data[: len(data) * 2 // 3])
    with pytest.raises(LjpegError, match="truncated|libjpeg"):
        decode_ljpeg(path, 30, 20, 12, backend=backend)


def test_decode_errors(tmp_path: Path) -> None:
    pixels = smooth_image(8, 8, 12, seed=7)
    good = encode_jpeg_lossless(pixels, 12)
    path = _write(tmp_path / "a.LJPEG", good)
    with pytest.raises(LjpegError, match=r"frame 8x8 does not hold the \.ics frame 8x9"):
        decode_ljpeg(path, 8, 9, 12)
    _write(path, b"this is not a jpeg at all")
    with pytest.raises(LjpegError, match="no JPEG markers"):
        decode_ljpeg(path, 8, 8, 12)
    _write(path, good.replace(b"\xff\xc3", b"\xff\xc0", 1))
    with pytest.raises(LjpegError, match="not a lossless JPEG"):
        decode_ljpeg(path, 8, 8, 12)
    dht = good.index(b"\xff\xc4")
    length = int.from_bytes(good[dht + 2 : dht + 4], "big")
    _write(path, good[:dht] + good[dht + 2 + length :])
    with pytest.raises(LjpegError, match="no Huffman table"):
        decode_ljpeg(path, 8, 8, 12)
    with pytest.raises(FileNotFoundError):
        decode_ljpeg(tmp_path / "missing.LJPEG", 8, 8, 12)


def test_decode_corrupt_streams_fail_cleanly(tmp_path: Path) -> None:
    """Damaged files decode exactly or raise LjpegError, never another exception."""
    rng = np.random.default_rng(10)
    pixels = rng.integers(0, 4096, (12, 9)).astype(np.uint16)
    good = encode_jpeg_lossless(pixels, 12)
    path = tmp_path / "x.LJPEG"
    outcomes = {"exact": 0, "error": 0}
    for trial in range(150):
        data = bytearray(good)
        if trial % 3 == 0:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        elif trial % 3 == 1:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            at = int(rng.integers(0, len(data)))
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8).tobytes()
        path.write_bytes(bytes(data))
        for backend in ("python", "auto"):
            try:
                out = decode_ljpeg(path, 12, 9, 12, backend=backend)
            except LjpegError:
                outcomes["error"] += 1
                continue
            assert out.shape == (12, 9) and out.dtype == np.uint16
            outcomes["exact"] += int(np.array_equal(out, pixels))
    assert outcomes["error"] > 200


def test_to_uint16() -> None:
    raw = np.array([[0, 1, 2048, 4095]], dtype=np.uint16)
    out, used = to_uint16(raw, 12)
    assert used == 12
    assert out.tolist() == [[0, 16, round(2048 * 65535 / 4095), 65535]]
    same, used16 = to_uint16(np.array([[0, 65535]], np.uint16), 16)
    assert used16 == 16 and same.tolist() == [[0, 65535]]
    # An .ics understating the depth: the smallest depth holding the values is used.
    _, used = to_uint16(np.array([[5000]], np.uint16), 12)
    assert used == 13


def test_decode_speed_1000x800(tmp_path: Path) -> None:
    """Both decoders on a 1000×800 12-bit image: exact, and in bounded time."""
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:1000, 0:800]
    pixels = 2000 + 1000 * np.sin(xx / 50) * np.cos(yy / 70) + rng.normal(0, 20, (1000, 800))
    pixels = np.clip(pixels, 0, 4095).astype(np.uint16)
    path = _write(tmp_path / "big.LJPEG", encode_lossless(pixels, 12))
    times = {}
    for backend in ("python", "auto"):
        start = time.perf_counter()
        out = decode_ljpeg(path, 1000, 800, 12, backend=backend)
        times[backend] = time.perf_counter() - start
        np.testing.assert_array_equal(out, pixels)
    assert times["python"] < 10 and times["auto"] < 5, times


# --------------------------------------------------------------------------------------
# the source: fabricated case tree -> CBIS-DDSM layout -> convert


def test_config_validation() -> None:
    assert DdsmConfig().root == ""
    with pytest.raises(ValueError, match="test_fraction"):
        DdsmConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="test_fraction"):
        DdsmConfig(test_fraction="0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="root"):
        DdsmConfig(root=3)  # type: ignore[arg-type]


def test_fetch_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.ddsm.root is empty"):
        fetch_ddsm(tmp_path / "raw", DdsmConfig(), seed=0)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        fetch_ddsm(tmp_path / "raw", DdsmConfig(root=str(tmp_path / "nope")), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no DDSM case \(\*\.ics file\)"):
        fetch_ddsm(tmp_path / "raw", DdsmConfig(root=str(tmp_path / "empty")), seed=0)


def test_split_patients_stratified_and_seeded() -> None:
    labels = {f"p{i:03d}": ("MALIGNANT" if i % 4 == 0 else "BENIGN") for i in range(100)}
    split = split_patients(labels, 0.2, seed=1)
    assert split == split_patients(dict(reversed(list(labels.items()))), 0.2, seed=1)
    assert split != split_patients(labels, 0.2, seed=2)
    test = [p for p, s in split.items() if s == "test"]
    assert len(test) in (19, 20, 21)
    malignant = sum(labels[p] == "MALIGNANT" for p in test)
    assert 4 <= malignant <= 6  # 25 malignant patients, 20% each ± 1
    assert set(split_patients({"a": "X", "b": "Y"}, 0.5, seed=3).values()) == {"train", "test"}


H, W = 256, 160  # large enough for the minimum-image rule
MASS_START, MASS_SIDE = (10, 12), 9  # square outline: cols 10..18, rows 12..20
DIAMOND = [3, 3, 3, 5, 5, 5, 7, 7, 7, 1, 1, 1]  # from (20, 10): cols 17..23, rows 10..16


@pytest.fixture(scope="module")
def ddsm_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ddsm") / "cases"
    normal = {view: smooth_image(H, W, 12, seed=i) for i, view in enumerate(
        ("LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO"))}  # fmt: skip
    truncated = encode_jpeg_lossless(normal["RIGHT_MLO"], 12)[:200]
    write_case(
        root / "normals" / "normal_01" / "case0002",
        "A-0002-1",
        normal,
        bits=12,
        streams={"RIGHT_MLO": truncated},
    )
    abnormal = {view: smooth_image(H, W, 16, seed=10 + i) for i, view in enumerate(
        ("LEFT_CC", "LEFT_MLO", "RIGHT_CC", "RIGHT_MLO"))}  # fmt: skip
    mass = abnormality_text(
        1,
        "MASS SHAPE IRREGULAR MARGINS SPICULATED",
        "MALIGNANT",
        [("BOUNDARY", *MASS_START, square_chain(MASS_SIDE)), ("CORE", 12, 14, square_chain(3))],
        assessment=5,
        subtlety=4,
    )
    unproven = abnormality_text(
        2, "MASS SHAPE OVAL MARGINS OBSCURED", "UNPROVEN", [("BOUNDARY", 30, 30, [2, 4, 6, 0])]
    )
    calc = abnormality_text(
        1,
        "CALCIFICATION TYPE PLEOMORPHIC DISTRIBUTION CLUSTERED",
        "BENIGN_WITHOUT_CALLBACK",
        [("BOUNDARY", 20, 10, DIAMOND)],
        assessment=3,
        subtlety=2,
    )
    outside = abnormality_text(
        1,
        "MASS SHAPE ROUND MARGINS CIRCUMSCRIBED",
        "BENIGN",
        [("BOUNDARY", 200, 300, [2, 4, 6, 0])],
    )
    write_case(
        root / "cancers" / "cancer_01" / "case0001",
        "C-0001-1",
        abnormal,
        bits=16,
        overlays={
            "LEFT_CC": overlay_text([mass, unproven]),
            "LEFT_MLO": overlay_text([calc]),
            "RIGHT_CC": overlay_text([outside]),
        },
        density=4,
    )
    raw = tmp_path_factory.mktemp("raw")
    summary = fetch_ddsm(raw, DdsmConfig(root=str(root), test_fraction=0.5), seed=5, workers=1)
    converted = tmp_path_factory.mktemp("converted") / "out"
    result = convert_dataset(raw, converted, workers=1)
    return {
        "root": root,
        "raw": raw,
        "summary": summary,
        "converted": converted,
        "result": result,
        "normal": normal,
        "abnormal": abnormal,
    }


def test_fetch_summary_and_skips(ddsm_tree: dict) -> None:
    summary = ddsm_tree["summary"]
    assert summary["cases_found"] == 2 and summary["cases_used"] == 2
    assert summary["full_images"] == 6  # 3 normal + LEFT_CC, LEFT_MLO, RIGHT_CC
    assert summary["normal_images"] == 3
    assert summary["rois"] == 2 and summary["rois_by_type"] == {"mass": 1, "calcification": 1}
    assert summary["rois_by_pathology"] == {
        "BENIGN": 0,
        "BENIGN_WITHOUT_CALLBACK": 1,
        "MALIGNANT": 1,
    }
    assert summary["rois_without_outline"] == 1
    assert summary["patients_train"] + summary["patients_test"] == 2
    reasons = {(s["image"], s["reason"].split(":")[0]) for s in summary["skipped"]}
    assert ("C_0001_1.LEFT_CC#2", "pathology UNPROVEN") in reasons
    assert ("A_0002_1.RIGHT_MLO", "undecodable LJPEG") in reasons
    assert ("C_0001_1.RIGHT_MLO", "no overlay in a case with findings") in reasons
    assert ("C_0001_1.RIGHT_CC#1", "outline empty or outside the image") in reasons
    undecodable = [s for s in summary["skipped"] if s["image"] == "A_0002_1.RIGHT_MLO"]
    assert undecodable[0]["file"] == "normals/normal_01/case0002/A_0002_1.RIGHT_MLO.LJPEG"
    assert "truncated" in undecodable[0]["reason"]
    on_disk = pd.read_csv(ddsm_tree["raw"] / "ddsm_skipped.csv", dtype=str)
    assert len(on_disk) == len(summary["skipped"]) == summary["skipped_total"]


def test_fetch_writes_cbis_layout(ddsm_tree: dict) -> None:
    raw = ddsm_tree["raw"]
    rows = {
        name: pd.read_csv(raw / "csv" / name, dtype=str, keep_default_na=False)
        for name in (
            "mass_case_description_train_set.csv",
            "mass_case_description_test_set.csv",
            "calc_case_description_train_set.csv",
            "calc_case_description_test_set.csv",
            "normal_case_description_train_set.csv",
            "normal_case_description_test_set.csv",
        )
    }
    frame = pd.concat(rows.values(), ignore_index=True)
    assert set(frame["dataset"]) == {"ddsm"}
    assert set(frame["patient_id"]) == {"DDSM_A_0002_1", "DDSM_C_0001_1"}
    # Patient-level split: every row of a patient in one split, one patient per split.
    where = {
        pid: {name.split("_")[-2] for name, f in rows.items() if (f["patient_id"] == pid).any()}
        for pid in frame["patient_id"]
    }
    assert sorted(len(v) for v in where.values()) == [1, 1]
    assert {next(iter(v)) for v in where.values()} == {"train", "test"}
    mass = frame[frame["abnormality type"] == "mass"]
    assert mass["breast_density"].tolist() == ["4", "4"]
    assert sorted(mass["cropped image file path"].str.len() > 0) == [False, True]
    for path in (raw / "CBIS-DDSM").rglob("*.dcm"):
        assert path.parts[-4].startswith(("Mass-", "Calc-", "Normal-"))


def test_convert_manifest(ddsm_tree: dict) -> None:
    result = ddsm_tree["result"]
    manifest = result.manifest
    assert set(manifest["dataset"]) == {"ddsm"}
    full = manifest[manifest["kind"] == "full"].set_index("image_id")
    rois = manifest[manifest["kind"] == "roi"].set_index("full_image_id")
    assert len(full) == 6 and len(rois) == 2
    normal = full[full["patient_id"] == "DDSM_A_0002_1"]
    assert set(normal["pathology"]) == {"NORMAL"} and len(normal) == 3
    assert set(normal["view"] + normal["laterality"]) == {"CCLEFT", "MLOLEFT", "CCRIGHT"}

    mass_id = next(i for i in full.index if i.startswith("Mass-") and i.endswith("LEFT_CC"))
    calc_id = next(i for i in full.index if i.startswith("Calc-"))
    benign_id = next(i for i in full.index if i.endswith("RIGHT_CC") and i.startswith("Mass-"))
    assert full.loc[mass_id, "pathology"] == "MALIGNANT"
    assert (full.loc[calc_id, "pathology"], full.loc[calc_id, "pathology_raw"]) == (
        "BENIGN",
        "BENIGN_WITHOUT_CALLBACK",
    )
    assert full.loc[benign_id, "pathology"] == "BENIGN"  # kept without its ROI

    mass = rois.loc[mass_id]
    x0, y0 = MASS_START
    bbox = tuple(int(mass[k]) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))
    assert bbox == (x0, y0, x0 + MASS_SIDE, y0 + MASS_SIDE)
    assert (mass["lesion_shape"], mass["lesion_margins"]) == ("IRREGULAR", "SPICULATED")
    assert (mass["assessment"], mass["subtlety"], mass["abnormality_id"]) == ("5", "4", "1")
    calc = rois.loc[calc_id]
    bbox = tuple(int(calc[k]) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))
    assert bbox == (17, 10, 24, 17)
    assert (calc["abnormality_type"], calc["lesion_shape"], calc["lesion_margins"]) == (
        "calcification",
        "PLEOMORPHIC",
        "CLUSTERED",
    )
    skipped = result.skipped
    assert skipped.empty  # the outline outside its image: an image-level label
    assert result.metrics["skipped_items"] == 0
    assert result.metrics["findings_without_roi"] == 1


def test_converted_pixels_are_the_ljpeg_pixels(ddsm_tree: dict) -> None:
    converted, manifest = ddsm_tree["converted"], ddsm_tree["result"].manifest
    full = manifest[manifest["kind"] == "full"].set_index("image_id")
    left_cc = next(i for i in full.index if i.startswith("Normal-") and i.endswith("LEFT_CC"))
    expected, _ = to_uint16(ddsm_tree["normal"]["LEFT_CC"], 12)
    np.testing.assert_array_equal(read_png(converted / full.loc[left_cc, "image_path"]), expected)

    mass_id = next(i for i in full.index if i.startswith("Mass-") and i.endswith("LEFT_CC"))
    image = ddsm_tree["abnormal"]["LEFT_CC"]  # 16-bit: stored unchanged
    np.testing.assert_array_equal(read_png(converted / full.loc[mass_id, "image_path"]), image)
    roi = manifest[(manifest["kind"] == "roi") & (manifest["full_image_id"] == mass_id)].iloc[0]
    crop = read_png(converted / roi["image_path"])
    x0, y0 = MASS_START
    margin = 4  # the minimum: 10% of 9 pixels rounds to 1
    np.testing.assert_array_equal(
        crop, image[y0 - margin : y0 + MASS_SIDE + margin, x0 - margin : x0 + MASS_SIDE + margin]
    )
    mask = read_png(converted / roi["mask_path"])
    assert mask.shape == (H, W) and set(np.unique(mask)) == {0, 255}
    assert int((mask == 255).sum()) == MASS_SIDE * MASS_SIDE


def test_fetch_is_seeded(ddsm_tree: dict, tmp_path: Path) -> None:
    cfg = DdsmConfig(root=str(ddsm_tree["root"]), test_fraction=0.5)
    again = fetch_ddsm(tmp_path / "a", cfg, seed=5, workers=2)
    keep = ("patients_train", "patients_test", "rois", "full_images", "skipped_by_reason")
    assert {k: again[k] for k in keep} == {k: ddsm_tree["summary"][k] for k in keep}
    for name in ("mass_case_description_train_set.csv", "normal_case_description_test_set.csv"):
        a = (tmp_path / "a" / "csv" / name).read_bytes()
        assert a == (ddsm_tree["raw"] / "csv" / name).read_bytes()


def test_summary_is_json_serialisable(ddsm_tree: dict) -> None:
    import json

    json.dumps(ddsm_tree["summary"])
    assert dataclasses.is_dataclass(DdsmConfig())
