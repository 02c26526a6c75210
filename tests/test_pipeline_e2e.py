"""End to end: the data stages under ``dvc repro`` on a tiny synthetic set.

Runs in a temporary copy of the repository, then changes one ``enhance`` param and checks
that DVC reruns exactly the stages that depend on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")
DATA_STAGES = ["download", "convert", "enhance", "patches", "split", "augment"]


def _dvc(cwd: Path, *args: str) -> str:
    # stages run as `python -m stages.X`: the interpreter running the tests must be found first
    path = f"{DVC.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "MAMMOCAD_LOGLEVEL": "WARNING"}
    proc = subprocess.run(
        [str(DVC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _tiny_repo(tmp_path: Path) -> Path:
    work = tmp_path / "repo"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy2(REPO / name, work / name)
    for name in ("stages", "src"):
        shutil.copytree(REPO / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    _dvc(work, "init", "--no-scm", "-q")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["synthetic"].update(n_patients=8, image_height=256)
    params["augment"]["copies"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if not DVC.exists():
        pytest.fail(f"dvc not found beside {sys.executable}; install the package first")
    work = _tiny_repo(tmp_path_factory.mktemp("e2e"))
    out = _dvc(work, "repro", *DATA_STAGES)
    assert _ran(out) == set(DATA_STAGES), out
    return work


def test_outputs_and_metrics(repo):
    convert = json.loads((repo / "metrics/convert.json").read_text())
    assert convert["full_images_written"] == 8 * 4
    assert convert["swapped_crop_mask_rows"] > 0
    manifest = pd.read_csv(repo / "data/converted/manifest.csv", keep_default_na=False)
    assert set(manifest["pathology"]) <= {"NORMAL", "BENIGN", "MALIGNANT"}
    assert (manifest["kind"] == "roi").sum() > 0
    patches = json.loads((repo / "metrics/patches.json").read_text())
    assert patches["full_images"] == 8 * 4
    assert patches["roi_kept"] + patches["roi_dropped"] == patches["roi_in"]


def test_split_is_patient_disjoint_and_augment_is_train_only(repo):
    split = pd.read_csv(repo / "data/split/split.csv", keep_default_na=False)
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    train_patients = set(split.loc[split["split"] == "train", "patient_id"])
    aug = pd.read_csv(repo / "data/augmented/train.csv", keep_default_na=False)
    assert set(aug["patient_id"]) == train_patients
    assert set(aug["split"]) == {"train"}
    assert (aug["aug_index"] > 0).sum() == (aug["aug_index"] == 0).sum()


def test_param_change_reruns_only_dependent_stages(repo):
    assert _ran(_dvc(repo, "repro", *DATA_STAGES)) == set()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["enhance"]["clahe"]["tile_grid"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _dvc(repo, "repro", *DATA_STAGES)
    ran = _ran(out)
    assert "download" not in ran and "convert" not in ran, out
    assert {"enhance", "patches", "augment"} <= ran, out
    # split reads only the patch manifest, whose content does not depend on pixel values,
    # so DVC rightly reuses it; everything that reads pixels reran.
    assert "split" not in ran, out
