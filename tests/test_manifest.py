"""The manifest module: severity order, reading with column checks, writing."""

from __future__ import annotations

import pandas as pd
import pytest

from mammocad.errors import InputError
from mammocad.manifest import (
    MANIFEST_COLUMNS,
    PATHOLOGIES,
    SEVERITY,
    read_manifest,
    worst,
    write_manifest,
)


def test_severity_order_and_worst():
    assert SEVERITY["NORMAL"] < SEVERITY["BENIGN"] < SEVERITY["MALIGNANT"]
    assert SEVERITY["BENIGN_WITHOUT_CALLBACK"] == SEVERITY["BENIGN"]
    assert set(PATHOLOGIES) <= set(SEVERITY)
    assert worst(["BENIGN", "NORMAL", "MALIGNANT", "BENIGN"]) == "MALIGNANT"
    assert worst(["NORMAL", "BENIGN_WITHOUT_CALLBACK", "BENIGN"]) == "BENIGN_WITHOUT_CALLBACK"
    with pytest.raises(KeyError):
        worst(["NORMAL", "UNPROVEN"])


def test_read_manifest_names_the_file_and_the_missing_column(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"manifest\.csv \(run the enhance stage\)"):
        read_manifest(tmp_path / "manifest.csv", made_by="enhance")
    path = tmp_path / "manifest.csv"
    pd.DataFrame({"image_id": ["a"], "kind": ["full"], "image_path": [""]}).to_csv(
        path, index=False
    )
    frame = read_manifest(path, ["image_id", "kind"])
    assert frame["image_path"].tolist() == [""]  # empty cells stay empty strings
    with pytest.raises(InputError, match=r"manifest\.csv: manifest lacks column\(s\) patient_id"):
        read_manifest(path, ["image_id", "patient_id"])


def test_write_manifest_checks_columns(tmp_path):
    frame = pd.DataFrame([dict.fromkeys(MANIFEST_COLUMNS, "x")])
    write_manifest(frame, tmp_path / "m.csv", MANIFEST_COLUMNS)
    assert list(read_manifest(tmp_path / "m.csv", MANIFEST_COLUMNS).columns) == list(
        MANIFEST_COLUMNS
    )
    with pytest.raises(ValueError, match="lacks column"):
        write_manifest(frame.drop(columns="kind"), tmp_path / "n.csv", MANIFEST_COLUMNS)
    assert not (tmp_path / "n.csv").exists()
