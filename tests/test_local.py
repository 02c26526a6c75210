"""Tests of the local source: a user's DICOM/PNG/PGM folder with a labels CSV."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from mammocad.convert import convert_dataset
from mammocad.dicom import SkipImage
from mammocad.imaging import read_image
from mammocad.io import read_png
from mammocad.sources.layout import make_uid, write_secondary_capture
from mammocad.sources.local import (
    NOT_FOUND,
    NOT_LISTED,
    LocalConfig,
    fetch_local,
    read_labels,
)

H, W = 256, 128  # the smallest full image the shared size rule accepts


def _image(seed: int, bits: int = 16, bright_left: bool = True) -> np.ndarray:
    """A breast-like test image: tissue on one side, noise, never binary."""
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    xx = np.linspace(1.0, 0.1, W)[None, :] if bright_left else np.linspace(0.1, 1.0, W)[None, :]
    image = 0.8 * top * xx * np.ones((H, 1)) + rng.normal(0, top * 0.03, (H, W))
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.clip(np.rint(image), 0, top).astype(dtype)


def _dicom(path: Path, pixels: np.ndarray, side: str, view: str) -> Path:
    write_secondary_capture(
        path,
        pixels,
        subject="SOMEONE",
        study_uid=make_uid("t", str(path), "study"),
        series_uid=make_uid("t", str(path), "series"),
        sop_uid=make_uid("t", str(path), "sop"),
        description="full mammogram images",
        side=side,
        view=view,
        instance=1,
    )
    return path


def _pgm(path: Path, pixels: np.ndarray, maxval: int) -> Path:
    header = f"P5\n# a comment\n{pixels.shape[1]} {pixels.shape[0]}\n{maxval}\n".encode()
    body = pixels.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    path.write_bytes(header + body)
    return path


HEADER = " File ,Patient_ID,PATHOLOGY,Laterality,view,abnormality_type,split,mask,"
LABELS = (
    HEADER
    + """roi_x0,roi_y0,roi_x1,roi_y1
dicom/mass.dcm,P1,MALIGNANT,,CC,,test,,5,6,15,30
dicom/normal.dcm,P1,normal,RIGHT,MLO,,,,,,,
dicom/ct.dcm,P2,BENIGN,L,CC,,,,,,,
png/benign16.png,P3,benign_without_callback,L,MLO,mass,,png/benign16_mask.png,,,,
png/calc8.png,P4,Malignant,r,mlo,calcification,train,,20,-3,140,12
scan.pgm,P5,NORMAL,,CC,,,,,,,
png/colour.png,P6,BENIGN,L,CC,,,,,,,
png/corrupt.png,P6,BENIGN,R,CC,,,,,,,
png/missing.png,P7,MALIGNANT,L,CC,,,,,,,
png/mismatch.png,P8,MALIGNANT,L,CC,,,png/small_mask.png,,,,
"""
)


@pytest.fixture(scope="module")
def local_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("local")
    (root / "dicom").mkdir()
    (root / "png").mkdir()
    images = {
        "mass": _image(1),
        "normal": _image(2, bright_left=False),
        "benign16": _image(3),
        "calc8": _image(4, bits=8, bright_left=False),
        "pgm": np.clip(_image(5).astype(np.int64) >> 4, 0, 4095).astype(np.uint16),
        "mismatch": _image(6),
    }
    _dicom(root / "dicom" / "mass.dcm", images["mass"], "LEFT", "CC")
    _dicom(root / "dicom" / "normal.dcm", images["normal"], "RIGHT", "MLO")
    ct = get_testdata_file("CT_small.dcm", download=False)
    assert ct is not None, "pydicom ships CT_small.dcm"
    shutil.copy(ct, root / "dicom" / "ct.dcm")
    cv2.imwrite(str(root / "png" / "benign16.png"), images["benign16"])
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[10:18, 4:9] = 255
    mask[12, 9] = 255
    cv2.imwrite(str(root / "png" / "benign16_mask.png"), mask)
    cv2.imwrite(str(root / "png" / "calc8.png"), images["calc8"])
    _pgm(root / "scan.pgm", images["pgm"], 4095)
    cv2.imwrite(str(root / "png" / "colour.png"), np.dstack([images["calc8"]] * 3))
    (root / "png" / "corrupt.png").write_bytes(b"\x00garbage, not an image" * 10)
    cv2.imwrite(str(root / "png" / "extra.png"), images["calc8"])
    cv2.imwrite(str(root / "png" / "mismatch.png"), images["mismatch"])
    cv2.imwrite(str(root / "png" / "small_mask.png"), mask[:20])
    (root / ".hidden").write_text("ignored")
    (root / "labels.csv").write_text(LABELS)

    raw = tmp_path_factory.mktemp("raw")
    summary = fetch_local(raw, LocalConfig(root=str(root), test_fraction=0.5), seed=3, workers=1)
    converted = tmp_path_factory.mktemp("converted") / "out"
    result = convert_dataset(raw, converted, workers=1)
    return {
        "root": root,
        "raw": raw,
        "summary": summary,
        "converted": converted,
        "result": result,
        "images": images,
        "mask": mask,
    }


def test_summary_and_skip_reasons(local_tree: dict) -> None:
    summary = local_tree["summary"]
    reasons = {s["file"]: s["reason"] for s in summary["skipped"]}
    assert reasons["dicom/ct.dcm"] == "not a mammogram: modality CT"
    assert reasons["png/colour.png"].startswith("not greyscale")
    assert reasons["png/corrupt.png"].startswith("unsupported or corrupt file")
    assert reasons["png/extra.png"] == NOT_LISTED == "not listed in labels"
    assert reasons["png/missing.png"] == NOT_FOUND == "listed in labels but not found"
    assert reasons["png/small_mask.png"].startswith(
        "mask size 20x128 does not match image 256x128"
    )
    assert len(reasons) == len(summary["skipped"]) == 6  # hidden files are not reported
    rows = {s["file"]: s["row"] for s in summary["skipped"]}
    assert (rows["dicom/ct.dcm"], rows["png/missing.png"], rows["png/extra.png"]) == (4, 10, "")
    on_disk = pd.read_csv(
        local_tree["raw"] / "local_skipped.csv", dtype=str, keep_default_na=False
    )
    assert on_disk.columns.tolist() == ["file", "row", "reason"]
    assert dict(zip(on_disk["file"], on_disk["reason"], strict=True)) == reasons

    assert summary["labels_rows"] == 10
    assert summary["images_written"] == 6
    assert summary["normal_images"] == 2
    assert summary["rois"] == 3
    assert summary["rois_by_type"] == {"mass": 2, "calcification": 1}
    assert summary["findings_without_roi"] == 1
    assert summary["laterality_from_dicom"] == 1 and summary["laterality_inferred"] == 1
    assert summary["skipped_by_reason"]["not listed in labels"] == 1
    json.dumps(summary)


def test_manifest_rows(local_tree: dict) -> None:
    manifest = local_tree["result"].manifest
    assert set(manifest["dataset"]) == {"local"}
    full = manifest[manifest["kind"] == "full"]
    assert len(full) == 6
    by_patient = {
        pid: group.iloc[0] for pid, group in full.groupby("patient_id") if len(group) == 1
    }
    p1 = full[full["patient_id"] == "P1"].set_index("view")
    assert set(p1["official_split"]) == {"test"}  # one row says test: the patient follows
    assert (p1.loc["CC", "pathology"], p1.loc["CC", "laterality"]) == ("MALIGNANT", "LEFT")
    assert (p1.loc["MLO", "pathology"], p1.loc["MLO", "laterality"]) == ("NORMAL", "RIGHT")
    p3, p4, p5, p8 = (by_patient[p] for p in ("P3", "P4", "P5", "P8"))
    assert (p3["pathology"], p3["pathology_raw"], p3["laterality"], p3["view"]) == (
        "BENIGN",
        "BENIGN_WITHOUT_CALLBACK",
        "LEFT",
        "MLO",
    )
    assert (p4["pathology"], p4["abnormality_type"], p4["laterality"], p4["view"]) == (
        "MALIGNANT",
        "calcification",
        "RIGHT",
        "MLO",
    )
    assert p4["official_split"] == "train"
    assert (p5["pathology"], p5["laterality"], p5["view"]) == ("NORMAL", "LEFT", "CC")
    assert p8["pathology"] == "MALIGNANT"  # kept, its mask unusable

    rois = manifest[manifest["kind"] == "roi"].set_index("patient_id")
    assert sorted(rois.index) == ["P1", "P3", "P4"]

    def bbox(pid: str) -> tuple[int, ...]:
        return tuple(int(rois.loc[pid, k]) for k in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"))

    assert bbox("P1") == (5, 6, 15, 30)  # the labels' box
    assert bbox("P3") == (4, 10, 10, 18)  # the mask's extent
    assert bbox("P4") == (20, 0, 128, 12)  # the box clipped to the image
    assert rois.loc["P4", "abnormality_type"] == "calcification"
    skipped = local_tree["result"].skipped
    # P8's finding lost its mask: an image-level label, neither an ROI nor a skip.
    assert not skipped["reason"].str.startswith("no ROI path").any()
    assert local_tree["result"].metrics["findings_without_roi"] == 1


def test_converted_pixels(local_tree: dict) -> None:
    converted, manifest = local_tree["converted"], local_tree["result"].manifest
    images = local_tree["images"]
    full = manifest[manifest["kind"] == "full"].set_index("patient_id")

    def pixels(pid: str) -> np.ndarray:
        return read_png(converted / full.loc[pid, "image_path"])

    np.testing.assert_array_equal(pixels("P3"), images["benign16"])  # 16-bit PNG as is
    np.testing.assert_array_equal(pixels("P4"), images["calc8"].astype(np.uint16) * 257)
    pgm = np.rint(images["pgm"] * (65535 / 4095)).astype(np.uint16)
    np.testing.assert_array_equal(pixels("P5"), pgm)
    roi = manifest[(manifest["kind"] == "roi") & (manifest["patient_id"] == "P3")].iloc[0]
    mask = read_png(converted / roi["mask_path"])
    np.testing.assert_array_equal(mask, local_tree["mask"])
    crop = read_png(converted / roi["image_path"])
    np.testing.assert_array_equal(crop, images["benign16"][6:22, 0:14])  # mask box + 4 px


def test_read_image_formats(tmp_path: Path) -> None:
    text = tmp_path / "t.pgm"
    text.write_text("P2\n3 2\n# grey\n255\n0 51 255\n255 0 102\n")
    image = read_image(text)
    assert image.kind == "pgm"
    assert image.pixels.tolist() == [[0, 13107, 65535], [65535, 0, 26214]]
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(SkipImage, match="not greyscale"):
        read_image(alpha)
    truncated = tmp_path / "cut.pgm"
    truncated.write_bytes(b"P5\n4 4\n255\n" + b"\x00" * 5)
    with pytest.raises(SkipImage, match="truncated"):
        read_image(truncated)
    dicom = _dicom(tmp_path / "x.dcm", _image(7), "RIGHT", "CC")
    image = read_image(dicom)
    assert (image.kind, image.laterality, image.view) == ("dicom", "RIGHT", "")


def test_labels_errors(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("file,pathology\na.png,NORMAL\n")
    with pytest.raises(ValueError, match=r"labels\.csv: missing required column 'patient_id'"):
        read_labels(path)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_labels(tmp_path / "nope.csv")
    path.write_text("FILE , Patient ID ,Pathology\na.png, P1 ,NORMAL\n")
    frame = read_labels(path)
    assert frame.loc[0, ["file", "patient_id", "pathology", "view", "row"]].tolist() == [
        "a.png",
        "P1",
        "NORMAL",
        "",
        2,
    ]


def test_docstring_example_parses(tmp_path: Path) -> None:
    import mammocad.sources.local as local

    doc = local.__doc__ or ""
    block = doc.split("Example::")[1].split("\n\n")[1]
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(line.strip() for line in block.splitlines()) + "\n")
    frame = read_labels(path)
    assert frame["pathology"].tolist() == ["MALIGNANT", "NORMAL", "benign"]
    assert frame.loc[2, ["roi_x0", "roi_y0", "roi_x1", "roi_y1"]].tolist() == [
        "1200",
        "830",
        "1460",
        "1010",
    ]


def test_fetch_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.local.root is empty"):
        fetch_local(tmp_path / "raw", LocalConfig(), seed=0)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        fetch_local(tmp_path / "raw", LocalConfig(root=str(tmp_path / "nope")), seed=0)
    root = tmp_path / "images"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        fetch_local(tmp_path / "raw", LocalConfig(root=str(root)), seed=0)
    cv2.imwrite(str(root / "a.png"), _image(8))
    cv2.imwrite(str(root / "b.png"), _image(9))
    (root / "labels.csv").write_text(
        "file,patient_id,pathology,split\na.png,P1,NORMAL,train\nb.png,P1,NORMAL,test\n"
    )
    with pytest.raises(ValueError, match="patient 'P1' has rows in both splits"):
        fetch_local(tmp_path / "raw", LocalConfig(root=str(root)), seed=0)
    (root / "labels.csv").write_text("file,patient_id\na.png,P1\n")
    with pytest.raises(ValueError, match="missing required column 'pathology'"):
        fetch_local(tmp_path / "raw", LocalConfig(root=str(root)), seed=0)


def test_bad_label_values_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    for name in "abcdefgh":
        cv2.imwrite(str(root / f"{name}.png"), _image(ord(name)))
    (root / "my_labels.csv").write_text(
        "file,patient_id,pathology,laterality,view,abnormality_type,split,"
        "roi_x0,roi_y0,roi_x1,roi_y1\n"
        "a.png,P1,CANCER,,,,,,,,\n"
        "b.png,P1,BENIGN,LEFTISH,,,,,,,\n"
        "c.png,P1,BENIGN,,AP,,,,,,\n"
        "d.png,P1,BENIGN,,,tumour,,,,,\n"
        "e.png,P1,BENIGN,,,,validation,,,,\n"
        "f.png,P1,BENIGN,,,,,1,2,1,9\n"
        "g.png,,BENIGN,,,,,,,,\n"
        "a.png,P1,cancer,,,,,,,,\n"  # the same labels again: skipped, not an error
        "h.png,P2,BENIGN,,,,,,,,\n"
    )
    cfg = LocalConfig(root=str(root), labels=str(root / "my_labels.csv"))
    summary = fetch_local(tmp_path / "raw", cfg, seed=0, workers=1)
    reasons = [s["reason"].split(" (")[0].split(":")[0] for s in summary["skipped"]]
    assert reasons == [
        "unknown pathology 'CANCER'",
        "unknown laterality 'LEFTISH'",
        "unknown view 'AP'",
        "unknown abnormality_type 'tumour'",
        "unknown split 'validation'",
        "invalid ROI box",
        "labels row without a patient_id",
        "duplicate labels row for this file",
    ]
    assert summary["images_written"] == 1


def test_config_validation() -> None:
    assert LocalConfig().labels == ""
    with pytest.raises(ValueError, match="test_fraction"):
        LocalConfig(test_fraction=-0.1)
    with pytest.raises(ValueError, match="labels"):
        LocalConfig(labels=None)  # type: ignore[arg-type]
