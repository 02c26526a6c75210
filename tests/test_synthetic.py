"""Tests of the synthetic CBIS-DDSM source: layout, DICOM headers, quirks, realism, seeds."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage

from mammocad.sources.layout import COLUMNS, UID_PREFIX
from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic

REAL_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cbis-ddsm"
CSV_NAMES = [
    f"{kind}_case_description_{split}_set.csv"
    for kind in ("mass", "calc", "normal")
    for split in ("train", "test")
]
NORMAL_COLUMNS = [
    "patient_id",
    "breast_density",
    "left or right breast",
    "image view",
    "abnormality id",
    "abnormality type",
    "assessment",
    "pathology",
    "subtlety",
    "image file path",
    "cropped image file path",
    "ROI mask file path",
]

SMALL = SyntheticConfig(n_patients=6, image_height=256, quirk_fraction=0.25)
# Mass-only, for rates and shape statistics over enough findings.
LARGE = SyntheticConfig(
    n_patients=20,
    image_height=256,
    normal_fraction=0.0,
    calc_fraction=0.0,
    malignant_fraction=0.5,
    quirk_fraction=0.3,
)


@dataclasses.dataclass
class Generated:
    """A generated raw tree, read back: its summary, CSV rows and DICOM files."""

    root: Path
    summary: dict
    rows: pd.DataFrame  # every CSV row, with the file's kind and split
    series: dict[str, list[pydicom.Dataset]]  # SeriesInstanceUID -> its files


def _load(root: Path, summary: dict) -> Generated:
    frames = []
    for name in CSV_NAMES:
        frame = pd.read_csv(root / "csv" / name, dtype=str, keep_default_na=False)
        frame["kind"], frame["split"] = name.split("_")[0], name.split("_")[-2]
        frames.append(frame.rename(columns={"breast density": "breast_density"}))
    series: dict[str, list[pydicom.Dataset]] = {}
    for path in sorted((root / "CBIS-DDSM").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.filename = str(path)
        series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    return Generated(root, summary, pd.concat(frames, ignore_index=True), series)


def _generate(root: Path, cfg: SyntheticConfig, seed: int, workers: int = 1) -> dict:
    return generate_synthetic(root, cfg, seed=seed, workers=workers)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Generated:
    root = tmp_path_factory.mktemp("small")
    return _load(root, _generate(root, SMALL, seed=7))


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Generated:
    root = tmp_path_factory.mktemp("large")
    return _load(root, _generate(root, LARGE, seed=11, workers=2))


def _uid(path: str, part: int) -> str:
    return path.strip().split("/")[part]


def _roi_files(data: Generated, row: pd.Series) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """(crop, mask) of a ROI row, told apart by content as a reader must."""
    files = data.series[_uid(row["cropped image file path"], 2)]
    assert len(files) == 2
    masks = [ds for ds in files if ds.BitsAllocated == 8]
    crops = [ds for ds in files if ds.BitsAllocated == 16]
    assert len(masks) == 1 and len(crops) == 1
    return crops[0], masks[0]


def _full(data: Generated, row: pd.Series) -> pydicom.Dataset:
    (ds,) = data.series[_uid(row["image file path"], 2)]
    return ds


def _abnormal(data: Generated) -> pd.DataFrame:
    return data.rows[data.rows["kind"] != "normal"]


# --------------------------------------------------------------------------------------
# layout and CSVs


def test_layout_and_summary(small: Generated) -> None:
    for name in CSV_NAMES:
        assert (small.root / "csv" / name).is_file()
    assert not (small.root / "source.json").exists()
    full = [d for files in small.series.values() for d in files if "full" in d.SeriesDescription]
    assert len(full) == small.summary["full_images"] == 4 * SMALL.n_patients
    rois = _abnormal(small)
    assert len(rois) == small.summary["rois"] > 0
    assert (small.rows["kind"] == "normal").sum() == small.summary["normal_images"]
    assert small.summary["breasts"]["normal"] == round(SMALL.normal_fraction * 12)
    assert small.summary["patients_test"] == round(SMALL.test_fraction * SMALL.n_patients)
    by_type = rois["abnormality type"].value_counts().to_dict()
    assert by_type == {k: v for k, v in small.summary["rois_by_type"].items() if v}
    # NBIA retriever folder names, which differ from the CSV paths.
    for path in (small.root / "CBIS-DDSM").rglob("*.dcm"):
        series, study, subject = path.parent, path.parent.parent, path.parent.parent.parent
        assert re.fullmatch(r"1-[12]\.dcm", path.name)
        assert re.fullmatch(r"1\.000000-(full mammogram|ROI mask) images-\d{5}", series.name)
        assert re.fullmatch(r"\d\d-\d\d-2016-DDSM-(NA-)?\d{5}", study.name)
        assert re.fullmatch(
            r"(Mass|Calc|Normal)-(Training|Test)_P_\d{5}_(LEFT|RIGHT)_(CC|MLO)(_\d)?", subject.name
        )


def _real_csvs() -> Path:
    """The real CBIS-DDSM CSVs: skipped where absent (a user's clone), required in CI."""
    if not REAL_CSV.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"real CBIS-DDSM CSVs missing at {REAL_CSV} (required where CI=true)")
        pytest.skip(f"real CBIS-DDSM CSVs not available at {REAL_CSV}")
    return REAL_CSV


def test_columns_match_real_cbis_ddsm(small: Generated) -> None:
    _real_csvs()
    for kind in ("mass", "calc"):
        for split in ("train", "test"):
            name = f"{kind}_case_description_{split}_set.csv"
            real = pd.read_csv(REAL_CSV / name, nrows=0).columns.tolist()
            ours = pd.read_csv(small.root / "csv" / name, nrows=0).columns.tolist()
            assert ours == real == COLUMNS[kind]
    normal = pd.read_csv(small.root / "csv/normal_case_description_train_set.csv", nrows=0)
    assert normal.columns.tolist() == NORMAL_COLUMNS


def test_csv_paths_resolve_by_series_uid(small: Generated) -> None:
    for _, row in small.rows.iterrows():
        paths = [row["image file path"]]
        if row["kind"] != "normal":
            paths += [row["cropped image file path"], row["ROI mask file path"]]
        for path in paths:
            subject, study, series, name = path.strip().split("/")
            assert re.fullmatch(r"00000[01]\.dcm", name)
            for uid in (study, series):
                assert uid.startswith(UID_PREFIX) and len(uid) <= 64
                assert uid[len(UID_PREFIX) :].isdigit()
            files = small.series[series]
            assert {ds.StudyInstanceUID for ds in files} == {study}
            assert {ds.PatientID for ds in files} == {subject}
            assert row["patient_id"] in subject
        if row["kind"] != "normal":
            assert _uid(row["cropped image file path"], 0).endswith(f"_{row['abnormality id']}")
    # The real files' cell quirks: newlines and stray spaces inside path cells.
    cells = pd.concat([small.rows[c] for c in COLUMNS["mass"][-3:]])
    assert cells.str.endswith("\n").sum() == small.summary["quirks"]["newline_cells"] > 0


def test_normal_rows(small: Generated) -> None:
    normal = small.rows[small.rows["kind"] == "normal"]
    assert len(normal) > 0
    assert set(normal["abnormality type"]) == {"normal"}
    assert set(normal["pathology"]) == {"NORMAL"}
    assert set(normal["abnormality id"]) == {"0"}
    assert set(normal["cropped image file path"]) == {""}
    assert all(p.startswith("Normal-") for p in normal["image file path"])


def test_vocabularies(large: Generated, small: Generated) -> None:
    rows = pd.concat([large.rows, small.rows])
    masses = rows[rows["kind"] == "mass"]
    calcs = rows[rows["kind"] == "calc"]
    assert len(masses) > 0 and len(calcs) > 0
    for column in ("mass shape", "mass margins", "calc type", "calc distribution"):
        assert all(rows.loc[rows["kind"] == column.split()[0], column].str.len() > 0)
    assert set(masses["mass margins"]) <= {"CIRCUMSCRIBED", "OBSCURED", "MICROLOBULATED",
                                           "SPICULATED", "ILL_DEFINED"}  # fmt: skip
    lesions = rows[rows["kind"] != "normal"]
    assert set(lesions["pathology"]) == {"BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT"}
    assert set(lesions["assessment"].astype(int)) <= {2, 3, 4, 5}
    assert set(lesions["subtlety"].astype(int)) <= {1, 2, 3, 4, 5}
    malignant = lesions["pathology"] == "MALIGNANT"
    # BI-RADS assessment follows the pathology.
    assert (
        lesions.loc[malignant, "assessment"].astype(int).mean()
        > lesions.loc[~malignant, "assessment"].astype(int).mean() + 0.5
    )


def test_vocabularies_are_real_ones(large: Generated, small: Generated) -> None:
    real = pd.concat(
        [pd.read_csv(path) for path in sorted(_real_csvs().glob("*_case_description_*.csv"))]
    )
    rows = pd.concat([large.rows, small.rows])
    for column in ("mass shape", "mass margins", "calc type", "calc distribution"):
        ours = set(rows.loc[rows["kind"] == column.split()[0], column])
        assert ours <= set(real[column].dropna()), column


# --------------------------------------------------------------------------------------
# DICOM files


def test_dicom_headers(small: Generated) -> None:
    for files in small.series.values():
        for ds in files:
            assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
            assert ds.SOPClassUID == SecondaryCaptureImageStorage
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.Modality == "MG" and ds.BodyPartExamined == "BREAST"
            assert ds.PhotometricInterpretation == "MONOCHROME2"
            assert ds.PixelRepresentation == 0 and ds.SamplesPerPixel == 1
            # Fake identifying fields are planted and removed at ingest (mammocad.deid).
            assert str(ds.PatientName) == "" and ds.PatientBirthDate == ""
            assert "AccessionNumber" not in ds or ds.AccessionNumber == ""
            assert "InstitutionName" not in ds and ds.PatientIdentityRemoved == "YES"
            assert Path(ds.filename).parts[-4] == ds.PatientID
            if ds.SeriesDescription == "full mammogram images":
                assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 16, 15)
                pixels = ds.pixel_array
                assert pixels.dtype == np.uint16 and pixels.shape == (256, ds.Columns)
                assert abs(ds.Columns / 256 - 0.62) < 0.04
                # Dark background, bright breast.
                assert np.percentile(pixels, 10) < 2000 and np.percentile(pixels, 90) > 20000
            else:
                assert ds.SeriesDescription == "ROI mask images"


def test_masks_and_crops(small: Generated) -> None:
    elongated = 0
    for _, row in _abnormal(small).iterrows():
        full = _full(small, row).pixel_array
        crop_ds, mask_ds = _roi_files(small, row)
        mask, crop = mask_ds.pixel_array, crop_ds.pixel_array
        assert (mask_ds.BitsAllocated, mask_ds.BitsStored) == (8, 8)
        assert mask.shape == full.shape and set(np.unique(mask)) == {0, 255}
        assert crop.dtype == np.uint16 and crop.size < full.size / 4
        # Locate the crop in the full image: it is an exact copy of the lesion's box.
        match = cv2.matchTemplate(full.astype(np.float32), crop.astype(np.float32), 0)
        y0, x0 = np.unravel_index(int(np.argmin(match)), match.shape)
        assert np.array_equal(full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]], crop)
        ys, xs = np.nonzero(mask)
        assert x0 <= xs.min() and xs.max() < x0 + crop.shape[1]
        assert y0 <= ys.min() and ys.max() < y0 + crop.shape[0]
        elongated += not 0.4 <= crop.shape[1] / crop.shape[0] <= 1.5
    assert elongated == small.summary["quirks"]["elongated_crops"]


def test_swapped_columns_at_requested_rate(large: Generated) -> None:
    swapped = 0
    rows = _abnormal(large)
    for _, row in rows.iterrows():
        index = int(row["cropped image file path"].strip()[-5])  # 00000N.dcm -> N
        files = large.series[_uid(row["cropped image file path"], 2)]
        (named,) = [ds for ds in files if ds.InstanceNumber == index + 1]
        swapped += named.BitsAllocated == 8  # the crop column names the mask
    assert swapped == round(LARGE.quirk_fraction * len(rows))
    assert swapped == large.summary["quirks"]["swapped_columns"]


def test_missing_series_and_mismatched_masks(tmp_path: Path) -> None:
    cfg = SyntheticConfig(
        n_patients=3,
        image_height=128,
        normal_fraction=0.0,
        missing_fraction=0.5,
        mismatched_mask_fraction=0.5,
    )
    data = _load(tmp_path, _generate(tmp_path, cfg, seed=3))
    rows = _abnormal(data)
    missing = [_uid(p, 2) not in data.series for p in rows["ROI mask file path"]]
    assert sum(missing) == round(0.5 * len(rows)) == data.summary["quirks"]["missing_series"]
    mismatched = 0
    for (_, row), lost in zip(rows.iterrows(), missing, strict=True):
        if not lost:
            mask = _roi_files(data, row)[1].pixel_array
            mismatched += mask.shape != _full(data, row).pixel_array.shape
    assert 0 < mismatched == data.summary["quirks"]["mismatched_masks"]


# --------------------------------------------------------------------------------------
# image realism


def _corner(pixels: np.ndarray, side: str) -> float:
    """Mean of the top chest-wall corner (chest wall on the left for LEFT breasts)."""
    if side == "RIGHT":
        pixels = pixels[:, ::-1]
    h, w = pixels.shape
    return float(pixels[: int(0.08 * h), : int(0.08 * w)].mean()) / 65535


def test_pectoral_muscle_on_mlo_only(large: Generated) -> None:
    corners: dict[str, list[float]] = {"CC": [], "MLO": []}
    seen = set()
    for _, row in large.rows.iterrows():
        key = row["image file path"]
        if key in seen:
            continue
        seen.add(key)
        pixels = _full(large, row).pixel_array
        corners[row["image view"]].append(_corner(pixels, row["left or right breast"]))
    cc, mlo = np.array(corners["CC"]), np.array(corners["MLO"])
    assert mlo.mean() > 0.55 and cc.mean() < 0.2
    assert mlo.min() > cc.max()


def test_malignant_masses_have_rougher_outlines(large: Generated) -> None:
    roughness: dict[bool, list[float]] = {True: [], False: []}
    for _, row in _abnormal(large).iterrows():
        mask = _roi_files(large, row)[1].pixel_array
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        area = cv2.contourArea(contour)
        if area < 60:  # too few pixels for an outline to mean anything
            continue
        ratio = cv2.arcLength(contour, True) ** 2 / (4 * np.pi * area)  # 1 for a circle
        roughness[row["pathology"] == "MALIGNANT"].append(ratio)
    malignant, benign = np.mean(roughness[True]), np.mean(roughness[False])
    assert len(roughness[True]) >= 10 and len(roughness[False]) >= 10
    assert malignant > 1.3 * benign, (malignant, benign)


def test_without_crossover_descriptors_follow_the_pathology(tmp_path: Path) -> None:
    cfg = dataclasses.replace(LARGE, n_patients=12, quirk_fraction=0.0, style_crossover=0.0)
    data = _load(tmp_path, _generate(tmp_path, cfg, seed=3))
    masses = _abnormal(data)
    malignant = masses["pathology"] == "MALIGNANT"
    benign_margins = {"CIRCUMSCRIBED", "OBSCURED"}
    malignant_margins = {"SPICULATED", "MICROLOBULATED"}  # ILL_DEFINED occurs in both
    assert not set(masses.loc[malignant, "mass margins"]) & benign_margins
    assert not set(masses.loc[~malignant, "mass margins"]) & malignant_margins
    assert malignant.sum() >= 5 and (~malignant).sum() >= 5


def test_microlobulated_outlines_ripple_without_spikes() -> None:
    from mammocad.sources.synthetic.lesions import _outline

    rng = np.random.default_rng(0)
    for _ in range(20):
        micro = _outline(rng, "OVAL", "MICROLOBULATED", np.array([]))
        smooth = _outline(rng, "OVAL", "CIRCUMSCRIBED", np.array([]))
        spiky = _outline(rng, "OVAL", "SPICULATED", rng.uniform(0, 2 * np.pi, 12))
        # a few percent of the radius, far below the spicule bases' 15-35 %
        assert micro.max() - micro.min() < 0.25
        assert micro.std() > smooth.std() / 2
        assert spiky.max() - 1 > 0.12


# --------------------------------------------------------------------------------------
# reproducibility


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_workers(small: Generated, tmp_path: Path) -> None:
    summary = _generate(tmp_path, SMALL, seed=7, workers=2)
    assert summary == small.summary
    assert _files(tmp_path) == _files(small.root)


def test_other_seed_other_data(small: Generated, tmp_path: Path) -> None:
    other = _load(tmp_path, _generate(tmp_path, SMALL, seed=8))
    name = "csv/mass_case_description_train_set.csv"
    assert (tmp_path / name).read_bytes() != (small.root / name).read_bytes()
    ours = _full(small, small.rows.iloc[0]).pixel_array
    theirs = _full(other, other.rows.iloc[0]).pixel_array
    assert ours.shape != theirs.shape or not np.array_equal(ours, theirs)
    assert not set(other.series) & set(small.series)


# --------------------------------------------------------------------------------------
# configuration


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n_patients", 0),
        ("n_patients", 2.5),
        ("image_height", 64),
        ("normal_fraction", 1.5),
        ("calc_fraction", -0.1),
        ("malignant_fraction", 2),
        ("test_fraction", "0.2"),
        ("quirk_fraction", -1.0),
        ("missing_fraction", 1.01),
        ("mismatched_mask_fraction", True),
        ("style_crossover", 1.2),
    ],
)
def test_invalid_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


def test_invalid_seed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_synthetic(tmp_path, SyntheticConfig(n_patients=1, image_height=128), seed=-1)
