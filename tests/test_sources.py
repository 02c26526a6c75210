"""The source registry: one source, several combined, and the download cache links."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from shared_data import require, shared_dir

from mammocad.convert import convert_dataset
from mammocad.sources import SOURCES, DataConfig, download, link_tree, merge_case_descriptions
from mammocad.sources.mias import MiasConfig
from mammocad.sources.synthetic import SyntheticConfig
from mammocad.split import SplitConfig, assign_splits, check_disjoint

TINY = SyntheticConfig(n_patients=4, image_height=256)


def test_registry_names_every_source():
    assert SOURCES.names() == ["cbis-ddsm", "ddsm", "local", "mias", "synthetic"]
    with pytest.raises(KeyError, match="unknown data source 'inbreast'; valid names: cbis"):
        download(__import__("pathlib").Path("/nonexistent"), DataConfig(source="inbreast"), 0)


def test_single_source_names_its_dataset(tmp_path):
    download(tmp_path / "raw", DataConfig(synthetic=TINY), seed=1, workers=1)
    meta = json.loads((tmp_path / "raw/source.json").read_text())
    assert meta["source"] == ["synthetic"]
    result = convert_dataset(tmp_path / "raw", tmp_path / "conv", workers=1)
    assert set(result.manifest["dataset"]) == {"synthetic"}


def test_failed_source_leaves_no_output(tmp_path):
    cfg = DataConfig(source="mias", mias=MiasConfig(archive=str(tmp_path / "missing.tar.gz")))
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        download(tmp_path / "raw", cfg, seed=0, workers=1)
    assert not (tmp_path / "raw").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_combined_sources_keep_patients_apart(tmp_path):
    sample = require(shared_dir() / "data/mias-sample/mias-sample.tar.gz", "mini-MIAS sample")
    cfg = DataConfig(
        source=("synthetic", "mias"), synthetic=TINY, mias=MiasConfig(archive=str(sample))
    )
    summary = download(tmp_path / "raw", cfg, seed=3, workers=2)
    assert set(summary) == {"synthetic", "mias", "merged_rows"}
    mass = pd.read_csv(
        tmp_path / "raw/csv/mass_case_description_train_set.csv", keep_default_na=False
    )
    assert set(mass["dataset"]) == {"synthetic", "mias"}
    assert all(p.startswith(("synthetic/P_", "mias/MIAS_P_")) for p in mass["patient_id"])
    result = convert_dataset(
        tmp_path / "raw", tmp_path / "conv", workers=2, max_skipped_fraction=0.2
    )
    full = result.manifest[result.manifest["kind"] == "full"]
    assert full["dataset"].value_counts().to_dict() == {"synthetic": 16, "mias": 60}
    # synthetic P_00001 and MIAS patient 1 are different people
    split = assign_splits(result.manifest, SplitConfig(), seed=0)
    check_disjoint(split)
    assert split.groupby("patient_id")["dataset"].nunique().max() == 1


def test_colliding_subjects_are_refused(tmp_path):
    for name in ("a", "b"):
        csv = tmp_path / name / "csv"
        csv.mkdir(parents=True)
        pd.DataFrame(
            [{"patient_id": "P_1", "image file path": "Mass-Training_P_1_LEFT_CC/1/2/000000.dcm"}]
        ).to_csv(csv / "mass_case_description_train_set.csv", index=False)
    with pytest.raises(ValueError, match="'a' and 'b' both hold subject 'Mass-Training_P_1"):
        merge_case_descriptions(tmp_path, ("a", "b"))


def test_link_tree_skips_hidden_state_and_partial_files(tmp_path):
    src = tmp_path / "cache"
    (src / "CBIS-DDSM/s").mkdir(parents=True)
    (src / "CBIS-DDSM/s/1-1.dcm").write_bytes(b"x")
    (src / ".tcia").mkdir()
    (src / ".tcia/state.json").write_text("{}")
    (src / "CBIS-DDSM/s/2.zip.part").write_bytes(b"y")
    assert link_tree(src, tmp_path / "out") == 1
    out = tmp_path / "out/CBIS-DDSM/s/1-1.dcm"
    assert out.read_bytes() == b"x"
    assert out.stat().st_ino == (src / "CBIS-DDSM/s/1-1.dcm").stat().st_ino
    assert not (tmp_path / "out/.tcia").exists()
