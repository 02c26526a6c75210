"""The split is patient-disjoint, stratified, seeded (paper §3.1)."""

import pandas as pd
import pytest

from mammocad.split import SplitConfig, assign_splits, check_disjoint, split_metrics


def _manifest(n_patients=50):
    rows = []
    for p in range(n_patients):
        pathology = ["NORMAL", "BENIGN", "MALIGNANT"][p % 3] if p < 45 else "MALIGNANT"
        for view in ("CC", "MLO"):
            rows.append(
                {
                    "image_id": f"P{p}_{view}",
                    "kind": "full",
                    "patient_id": f"P{p:03d}",
                    "pathology": pathology,
                    "official_split": "test" if p % 5 == 0 else "train",
                }
            )
            if pathology != "NORMAL":
                rows.append(
                    {
                        "image_id": f"P{p}_{view}_1",
                        "kind": "roi",
                        "patient_id": f"P{p:03d}",
                        "pathology": pathology,
                        "official_split": "test" if p % 5 == 0 else "train",
                    }
                )
    return pd.DataFrame(rows)


def test_no_patient_on_both_sides():
    frame = assign_splits(_manifest(), SplitConfig(), seed=1)
    check_disjoint(frame)
    per_patient = frame.groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    assert set(frame["split"]) == {"train", "val", "test"}


def test_stratified_counts_per_label():
    # strata: 15 NORMAL, 15 BENIGN, 20 MALIGNANT patients → round(0.2·n) test each
    frame = assign_splits(_manifest(), SplitConfig(test_fraction=0.2, val_fraction=0.0), 3)
    test = frame[frame["split"] == "test"].groupby("patient_id")["pathology"].first()
    assert test.value_counts().to_dict() == {"NORMAL": 3, "BENIGN": 3, "MALIGNANT": 4}
    assert set(frame["split"]) == {"train", "test"}


def test_seeded_and_seed_sensitive():
    m = _manifest()
    a = assign_splits(m, SplitConfig(), 7)["split"].tolist()
    assert a == assign_splits(m, SplitConfig(), 7)["split"].tolist()
    assert a != assign_splits(m, SplitConfig(), 8)["split"].tolist()


def test_check_disjoint_catches_leak():
    frame = assign_splits(_manifest(), SplitConfig(), 1)
    frame.loc[frame.index[0], "split"] = "test" if frame.iloc[0]["split"] != "test" else "train"
    with pytest.raises(AssertionError, match="more than one split"):
        check_disjoint(frame)


def test_official_split_moves_overlap_to_test():
    m = _manifest(10)
    m.loc[m["image_id"] == "P1_CC", "official_split"] = "test"  # P001 now on both sides
    frame = assign_splits(m, SplitConfig(method="official", val_fraction=0.0), 0)
    check_disjoint(frame)
    assert set(frame.loc[frame["patient_id"] == "P001", "split"]) == {"test"}
    assert set(frame.loc[frame["patient_id"] == "P002", "split"]) == {"train"}
    assert split_metrics(frame)["official_overlap_patients"] == 1


def test_bad_fraction_names_key():
    with pytest.raises(ValueError, match="split.test_fraction"):
        SplitConfig(test_fraction=1.5)
