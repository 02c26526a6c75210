"""The source registry: one source, several combined, and the download cache links."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from shared_data import require, shared_dir

from mammocad.config import to_dict
from mammocad.convert import convert_dataset
from mammocad.sources import (
    SOURCES,
    DataConfig,
    download,
    link_tree,
    merge_case_descriptions,
    register_source,
)
from mammocad.sources.ddsm import DdsmConfig
from mammocad.sources.mias import MiasConfig
from mammocad.sources.synthetic import SyntheticConfig
from mammocad.split import SplitConfig, assign_splits, check_disjoint
from stages.common import section

TINY = SyntheticConfig(n_patients=4, image_height=256)


def test_registry_names_every_source():
    assert SOURCES.names() == ["cbis-ddsm", "ddsm", "local", "mias", "synthetic"]
    with pytest.raises(KeyError, match="unknown data source 'inbreast'; valid names: cbis"):
        download(Path("/nonexistent"), DataConfig(source="inbreast"), 0)


@dataclass(frozen=True)
class DummyConfig:
    """Settings of a source defined in this test only."""

    rows: int = 1
    folder: str = ""


@pytest.fixture
def dummy_source(monkeypatch):
    """Registers a ``dummy`` source for one test, as a source module does."""
    monkeypatch.setattr(SOURCES, "_items", dict(SOURCES._items))  # undone after the test

    @register_source("dummy", DummyConfig, paths=("folder",))
    def fetch_dummy(out_dir: Path, cfg: DummyConfig, seed: int, workers: int = 0) -> dict:
        (out_dir / "csv").mkdir(parents=True)
        (out_dir / "csv/rows.txt").write_text("row\n" * cfg.rows)
        return {"rows": cfg.rows, "seed": seed}

    return fetch_dummy


def test_a_registered_source_needs_no_other_edit(dummy_source, tmp_path):
    params: dict[str, Any] = {"data": {"source": "dummy", "dummy": {"rows": 3, "folder": "d"}}}
    cfg = section(params, "data", DataConfig)
    assert cfg.settings("dummy") == DummyConfig(rows=3, folder="d")
    assert cfg.settings("mias") == MiasConfig()  # the others keep their defaults
    assert cfg.path_params()["dummy.folder"] == "d"
    assert to_dict(cfg)["dummy"] == {"rows": 3, "folder": "d"}
    assert download(tmp_path / "raw", cfg, seed=5) == {"rows": 3, "seed": 5}
    assert (tmp_path / "raw/csv/rows.txt").read_text() == "row\n" * 3
    meta = json.loads((tmp_path / "raw/source.json").read_text())
    assert meta["source"] == ["dummy"] and meta["config"]["dummy"] == {"rows": 3, "folder": "d"}
    with pytest.raises(SystemExit, match=r"'data\.dummy\.row'; valid keys: folder, rows$"):
        section({"data": {"dummy": {"row": 3}}}, "data", DataConfig)
    with pytest.raises(SystemExit, match=r"'data\.dummy\.rows': expected an integer"):
        section({"data": {"dummy": {"rows": "3"}}}, "data", DataConfig)


def test_unknown_keys_are_named():
    with pytest.raises(SystemExit, match=r"unknown config key 'data\.mias\.archve'"):
        section({"data": {"source": "mias", "mias": {"archve": "x"}}}, "data", DataConfig)
    with pytest.raises(SystemExit, match=r"unknown config key 'data\.foo'; valid keys: cbis"):
        section({"data": {"foo": {}}}, "data", DataConfig)
    with pytest.raises(ValueError, match="unknown data section 'foo'"):
        DataConfig(sections={"foo": MiasConfig()})
    with pytest.raises(TypeError, match="data.mias must be a MiasConfig, got DdsmConfig"):
        DataConfig(sections={"mias": DdsmConfig()})


def test_defaults_are_each_source_config_defaults():
    cfg = section({}, "data", DataConfig)
    assert cfg == DataConfig()
    assert cfg.source == "synthetic" and cfg.download_dir == "data/downloads"
    assert {key: type(value) for key, value in cfg.sections.items()} == {
        spec.key: spec.config for spec in map(SOURCES.get, SOURCES)
    }
    assert all(value == type(value)() for value in cfg.sections.values())


def test_duplicate_names_and_keys_are_refused(dummy_source):
    with pytest.raises(ValueError, match="duplicate data source name 'dummy'"):
        register_source("dummy", DummyConfig, key="dummy2")(dummy_source)
    with pytest.raises(ValueError, match=r"the key data\.dummy is taken"):
        register_source("other", DummyConfig, key="dummy")(dummy_source)
    with pytest.raises(ValueError, match=r"the key data\.source is taken"):
        register_source("source", DummyConfig)(dummy_source)
    with pytest.raises(ValueError, match="DummyConfig has no 'root'"):
        register_source("other", DummyConfig, paths=("root",))(dummy_source)


def test_single_source_names_its_dataset(tmp_path):
    download(tmp_path / "raw", DataConfig(sections={"synthetic": TINY}), seed=1, workers=1)
    meta = json.loads((tmp_path / "raw/source.json").read_text())
    assert meta["source"] == ["synthetic"]
    result = convert_dataset(tmp_path / "raw", tmp_path / "conv", workers=1)
    assert set(result.manifest["dataset"]) == {"synthetic"}


def test_failed_source_leaves_no_output(tmp_path):
    missing = MiasConfig(archive=str(tmp_path / "missing.tar.gz"))
    cfg = DataConfig(source="mias", sections={"mias": missing})
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        download(tmp_path / "raw", cfg, seed=0, workers=1)
    assert not (tmp_path / "raw").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_combined_sources_keep_patients_apart(tmp_path):
    sample = require(shared_dir() / "data/mias-sample/mias-sample.tar.gz", "mini-MIAS sample")
    cfg = DataConfig(
        source=("synthetic", "mias"),
        sections={"synthetic": TINY, "mias": MiasConfig(archive=str(sample))},
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
