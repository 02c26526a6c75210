"""Models in MLflow: logged without pickles, registered as champion, used by predict."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from mammocad import cli
from mammocad.checkpoint import save_checkpoint
from mammocad.config import to_dict
from mammocad.enhance import EnhanceConfig
from mammocad.mlflow_models import (
    CHAMPION,
    MODEL_NAME,
    ModelSpec,
    companion_uri,
    registered_name,
)
from mammocad.models.backbones import build_architecture, get_spec
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.patches import PatchesConfig
from mammocad.tracking import log_run

BACKBONE = "mobilenet_v1"
NAME = registered_name(BACKBONE)
CHAMPION_URI = f"models:/{NAME}@{CHAMPION}"
#: Large training crops keep the rescaled mammogram small, so predict stays fast.
PATCH_PX = 896.0
IMAGE_SIZE = 96


def _mammogram(h: int = 512, w: int = 400) -> np.ndarray:
    """A breast-like 16-bit image: bright half-disc on the left, dark background."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    image = rng.integers(0, 500, (h, w)).astype(np.float64)
    breast = ((yy - h / 2) / (0.45 * h)) ** 2 + (xx / (0.6 * w)) ** 2 <= 1
    image[breast] = 25000 + 5000 * rng.standard_normal(int(breast.sum()))
    return np.clip(image, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Two seeded checkpoints, each logged in its own run of a sqlite store and registered
    with the alias ``champion``, as the evaluate and train_shallow stages do."""
    root = tmp_path_factory.mktemp("registry")
    models = root / "models"
    models.mkdir()
    torch.manual_seed(0)
    spec = get_spec(BACKBONE)
    patches = to_dict(PatchesConfig(image_size=IMAGE_SIZE))
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": patches,
        "patch_px": PATCH_PX,
    }
    model = build_architecture(BACKBONE, "scratch")
    save_checkpoint(models / f"{BACKBONE}.pt", model, BACKBONE, config, 1, {"init": "scratch"})
    shallow = ShallowCNN(ShallowConfig(channels=(4, 8)))
    shallow_config = {
        "input": {"channels": 1, "mean": [0.3], "std": [0.2]},
        "shallow": {"positive": "abnormal", "channels": [4, 8], "dropout": 0.3},
        "enhance": to_dict(EnhanceConfig()),
        "patches": patches,
    }
    save_checkpoint(models / "shallow_cnn.pt", shallow, "shallow_cnn", shallow_config, 1, {})
    uri = f"sqlite:///{root / 'mlflow.db'}"
    example = np.random.default_rng(1).random((1, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    run_ids = {}
    for entry, ckpt, ex in (
        (BACKBONE, models / f"{BACKBONE}.pt", example),
        ("shallow_cnn", models / "shallow_cnn.pt", None),
    ):
        run_ids[entry] = log_run(
            uri,
            "mammocad",
            entry,
            params={"seed": 0},
            metrics={"test": {"accuracy": 0.5}},
            artifact_root=root / "mlartifacts",
            model=ModelSpec(ckpt, example=ex, register_as=registered_name(entry)),
        )
    return {"root": root, "models": models, "uri": uri, "runs": run_ids, "example": example}


@pytest.fixture()
def client(store):
    import mlflow

    return mlflow.MlflowClient(store["uri"])


def _download(store, uri: str, dst: Path) -> Path:
    import mlflow

    return Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(dst), tracking_uri=store["uri"]
        )
    )


def test_each_run_logs_its_model_and_the_champion_alias_points_at_it(store, client):
    for entry, run_id in store["runs"].items():
        version = client.get_model_version_by_alias(registered_name(entry), CHAMPION)
        assert version.run_id == run_id
        run = client.get_run(run_id)
        # MLflow 3: the model is a LoggedModel of the run, not a run artifact
        (model_id,) = [m.model_id for m in run.outputs.model_outputs]
        assert version.source == f"models:/{model_id}"
        logged = client.get_logged_model(model_id)
        assert logged.name == MODEL_NAME and logged.source_run_id == run_id


def test_the_logged_model_has_a_signature_an_example_and_no_pickle(store, tmp_path):
    model_dir = _download(store, CHAMPION_URI, tmp_path / "m")
    files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    assert f"data/{BACKBONE}.pt" in files and "input_example.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["loader_module"] == "mammocad.mlflow_models"
    assert "python_model" not in pyfunc and "cloudpickle_version" not in pyfunc
    inputs = json.loads(mlmodel["signature"]["inputs"])
    outputs = json.loads(mlmodel["signature"]["outputs"])
    assert inputs == [
        {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1, 96, 96]}}
    ]
    assert outputs == [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}]
    assert mlmodel["saved_input_example_info"]["type"] == "ndarray"
    # the data is the checkpoint itself: tensors and plain values only
    ckpt = torch.load(model_dir / "data" / f"{BACKBONE}.pt", weights_only=True)
    assert ckpt["backbone"] == BACKBONE and ckpt["config"]["patch_px"] == PATCH_PX
    shallow_dir = _download(store, companion_uri(CHAMPION_URI, "shallow_cnn"), tmp_path / "s")
    shallow = yaml.safe_load((shallow_dir / "MLmodel").read_text())
    assert json.loads(shallow["signature"]["inputs"])[0]["tensor-spec"]["shape"] == [
        -1,
        1,
        256,
        160,
    ]


def test_pyfunc_loads_the_champion_and_matches_the_checkpoint(store):
    import mlflow

    from mammocad.checkpoint import load_trained_backbone

    mlflow.set_tracking_uri(store["uri"])
    loaded = mlflow.pyfunc.load_model(CHAMPION_URI)
    example = store["example"]
    probs = loaded.predict(example)
    model, ckpt = load_trained_backbone(store["models"] / f"{BACKBONE}.pt")
    norm = ckpt["config"]["input"]
    x = (
        torch.from_numpy(example).expand(-1, 3, -1, -1)
        - torch.tensor(norm["mean"]).view(1, 3, 1, 1)
    ) / torch.tensor(norm["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1).numpy()
    assert probs.shape == (1, 2)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def _predict(out: Path, image: Path, *source: str) -> dict:
    assert cli.main(["predict", str(image), "--out", str(out), *source]) == 0
    result = json.loads((out / "scan.json").read_text())
    for key in ("timings_s", "checkpoint"):
        result.pop(key, None)
    for part in result.values():
        if isinstance(part, dict):
            part.pop("checkpoint", None)
            part.pop("timings_s", None)
    return result


def test_predict_from_the_registry_equals_predict_from_the_folder(
    store, client, tmp_path, monkeypatch, capsys
):
    import tempfile

    monkeypatch.chdir(tmp_path)  # no params.yaml, no mlflow.db here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    downloads = tmp_path / "tmp"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), _mammogram())
    folder = ["--models", str(store["models"]), "--backbone", BACKBONE]
    from_folder = _predict(tmp_path / "a", image, *folder)
    capsys.readouterr()
    from_registry = _predict(tmp_path / "b", image, "--model", CHAMPION_URI)
    assert capsys.readouterr().err == ""  # no download progress bars
    assert from_registry["shallow"] is not None  # the shallow CNN's champion came along
    assert from_registry == from_folder
    # the download is removed when the command returns (`mammocad` exits without teardown)
    assert not [p for p in downloads.iterdir() if p.name.startswith("mammocad-model-")]

    # without the alias the URI no longer resolves: one line naming it, exit status 1
    version = client.get_model_version_by_alias(NAME, CHAMPION).version
    client.delete_registered_model_alias(NAME, CHAMPION)
    try:
        out = tmp_path / "c"
        assert cli.main(["predict", str(image), "--out", str(out), "--model", CHAMPION_URI]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("mammocad predict: error: model ")
        assert CHAMPION_URI in err[0]
        assert not out.exists()
    finally:
        client.set_registered_model_alias(NAME, CHAMPION, version)


def test_predict_refuses_a_missing_store_without_creating_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    image = tmp_path / "scan.png"
    cv2.imwrite(str(image), _mammogram())
    assert cli.main(["predict", str(image), "--model", CHAMPION_URI]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MLflow store at mlflow.db" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_companion_uri():
    assert companion_uri(CHAMPION_URI, "shallow_cnn") == "models:/mammocad-shallow_cnn@champion"
    assert companion_uri(f"models:/{NAME}/3", "shallow_cnn") is None
    assert companion_uri("runs:/abc/model", "shallow_cnn") is None


def test_requirement_check_skips_the_package_index_and_still_warns(monkeypatch):
    """Inside ``_modules_of`` MLflow's requirement check needs no index of every installed
    package, still warns about a requirement the environment does not meet, and leaves its
    cache as it found it, also when logging fails."""
    from mlflow.utils import requirements_utils as reqs

    from mammocad.mlflow_models import _modules_of

    def no_index():
        raise AssertionError("indexed every installed package")

    monkeypatch.setattr(reqs, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(reqs, "_PACKAGES_TO_MODULES", None)
    monkeypatch.setattr(reqs.importlib_metadata, "packages_distributions", no_index)
    warnings: list[str] = []
    monkeypatch.setattr(reqs._logger, "warning", lambda msg, *a: warnings.append(msg % a))
    wanted = ["numpy==0.0.1", f"torch=={torch.__version__.split('+')[0]}"]
    with _modules_of(wanted):
        reqs.warn_dependency_requirement_mismatches(wanted)
    assert len(warnings) == 1
    assert "numpy==0.0.1" in warnings[0] and "torch==" not in warnings[0]
    assert reqs._MODULES_TO_PACKAGES is None and reqs._PACKAGES_TO_MODULES is None

    with pytest.raises(RuntimeError), _modules_of(wanted):
        raise RuntimeError("log_model failed")
    assert reqs._MODULES_TO_PACKAGES is None

    filled = {"numpy": ["numpy"], "yaml": ["PyYAML"]}
    monkeypatch.setattr(reqs, "_MODULES_TO_PACKAGES", filled)
    with _modules_of(wanted):
        assert reqs._MODULES_TO_PACKAGES is filled
    assert reqs._MODULES_TO_PACKAGES is filled


def test_an_unchanged_model_is_not_logged_again_and_the_champion_stays(tmp_path):
    import mlflow

    from mammocad.tracking import RunSpec, log_runs

    name = registered_name("shallow_cnn")
    config = {
        "input": {"channels": 1, "mean": [0.3], "std": [0.2]},
        "shallow": {"positive": "abnormal", "channels": [4, 8], "dropout": 0.3},
        "patches": to_dict(PatchesConfig(image_size=IMAGE_SIZE)),
    }
    specs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path / f"shallow_{seed}.pt"
        shallow = ShallowCNN(ShallowConfig(channels=(4, 8)))
        save_checkpoint(path, shallow, "shallow_cnn", config, 1, {})
        spec = RunSpec("shallow_cnn", {"seed": seed}, {"test": {"accuracy": 0.5}})
        spec.model = ModelSpec(path, register_as=name)
        specs.append(spec)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def logged(spec: RunSpec) -> bool:
        return log_runs(uri, "mammocad", [spec])["shallow_cnn"][1]

    assert logged(specs[0]) and logged(specs[1])
    client = mlflow.MlflowClient(uri)
    assert int(client.get_model_version_by_alias(name, CHAMPION).version) == 2
    # the first model again (e.g. a change undone): its run is found, not logged again,
    # and the alias, perhaps placed by hand, stays where it is
    assert not logged(specs[0])
    assert int(client.get_model_version_by_alias(name, CHAMPION).version) == 2
    # with the alias gone, the found run's version gets it
    client.delete_registered_model_alias(name, CHAMPION)
    assert not logged(specs[0])
    first = client.get_model_version_by_alias(name, CHAMPION)
    assert int(first.version) == 1 and client.get_run(first.run_id).data.params["seed"] == "0"
    assert len(client.search_runs([client.get_experiment_by_name("mammocad").experiment_id])) == 2
