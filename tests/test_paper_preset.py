"""The paper's experiment as one command (``mammocad preset paper``), end to end.

A tiny NBIA Data Retriever folder (written by the synthetic source) stands for the
researcher's CBIS-DDSM copy; the preset runs the whole pipeline on it as one
``dvc exp run``, with the device forced to the CPU and the sizes made tiny by ``-S``
settings given after the preset's (the preset's own values are checked separately).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from tiny_repo import BIN, REPO, copy_tiny, run

from mammocad.preset import find_preset, load_yaml, overrides
from mammocad.sources.synthetic import SyntheticConfig, write_retriever_download

PAPER_BACKBONES = ["alexnet", "vgg16", "vgg19", "resnet50", "googlenet", "mobilenet_v1", "mobilenet_v2"]  # fmt: skip
#: After the preset: tiny sizes, one backbone, the CPU. ``init: imagenet`` as in the
#: preset: offline, MobileNet-v1 resolves to the bundled int8 ImageNet weights.
TINY = [
    "finetune.backbones=['mobilenet_v1']",
    "export.backbones=['mobilenet_v1']",
    "patches.image_size=64",
    "augment.copies=1",
    "finetune.train.epochs=2",
    "finetune.train.batch_size=16",
    "finetune.train.device='cpu'",
    "shallow.train.epochs=2",
    "shallow.train.batch_size=16",
    "shallow.train.device='cpu'",
]


def test_paper_preset_sets_the_papers_values():
    preset = load_yaml(find_preset("paper", REPO), "preset")
    assert preset["data"]["source"] == "cbis-ddsm"
    assert preset["data"]["cbis_ddsm"]["abnormality"] == "mass"
    assert preset["patches"]["image_size"] == 224
    assert preset["finetune"]["backbones"][:7] == PAPER_BACKBONES
    assert preset["export"]["backbones"] == PAPER_BACKBONES
    assert preset["finetune"]["overrides"]["mobilenet_v1-scratch"] == {"init": "scratch"}
    assert preset["finetune"]["init"] == "imagenet"
    train = preset["finetune"]["train"]
    assert (train["batch_size"], train["weight_decay"], train["lr_decay"]) == (64, 1e-5, 0.99)
    assert train["patience"] > 0 and train["epochs"] >= 50 and train["device"] == "auto"
    # whole epochs: the default run's step caps must not leak into the paper's experiment
    assert train["max_batches"] == 0 and preset["shallow"]["train"]["max_batches"] == 0
    # Every key exists in params.yaml (a typo would fail before anything runs).
    list(overrides(preset, yaml.safe_load((REPO / "params.yaml").read_text())))


def test_preset_command_refuses_a_missing_root(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mammocad.cli", "preset", "paper", "--root", str(tmp_path / "x"),
         "--project", str(REPO), "--dry-run"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("mammocad preset: error: --root")


@pytest.mark.slow
def test_paper_preset_end_to_end_on_a_retriever_folder(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    copy_tiny(work, ["mobilenet_v1"], localize={"backbone": "mobilenet_v1"})
    params = yaml.safe_load((work / "params.yaml").read_text())
    # The preset names the paper's backbones' overrides: keep the project's keys.
    params["finetune"]["overrides"] = yaml.safe_load((REPO / "params.yaml").read_text())[
        "finetune"
    ]["overrides"]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(work, "cp", "-r", str(REPO / "presets"), str(work / "presets"))
    run(work, "git", "init", "-q", "-b", "main")
    run(work, str(BIN / "dvc"), "init", "-q")
    run(work, "git", "add", "-A")
    run(work, "git", "commit", "-q", "-m", "tiny")
    nbia = tmp_path / "nbia"
    # No normal breasts (CBIS-DDSM has none); some calcifications, which the preset leaves out.
    data = SyntheticConfig(n_patients=12, image_height=256, normal_fraction=0.0, calc_fraction=0.2)
    write_retriever_download(nbia, data, seed=5, workers=1)

    args = [sys.executable, "-m", "mammocad.cli", "preset", "paper", "--root", str(nbia)]
    for setting in TINY:
        args += ["-S", setting]
    run(work, *args, env={"CUDA_VISIBLE_DEVICES": ""})

    final = yaml.safe_load((work / "params.yaml").read_text())
    assert final["data"]["source"] == "cbis-ddsm"
    assert final["data"]["cbis_ddsm"]["root"] == str(nbia.resolve())
    assert final["data"]["cbis_ddsm"]["abnormality"] == "mass"
    assert final["finetune"]["train"]["patience"] == 10
    source = json.loads((work / "data/raw/source.json").read_text())
    assert source["summary"]["series_missing"] == 0 and source["summary"]["series_linked"] > 0
    assert source["summary"]["csv_rows"]["calc_case_description_train_set.csv"] == 0
    trained = json.loads((work / "metrics/train/mobilenet_v1.json").read_text())
    assert trained["device"] == "cpu" and trained["batch_per_rank"] == 16
    table = (work / "reports/table1.md").read_text()
    assert "MobileNet" in table and "paper" in table
    exps = run(work, str(BIN / "dvc"), "exp", "show", "--json")
    assert '"paper"' in exps
