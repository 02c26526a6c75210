"""Tests of checkpoint saving and loading (paper §4.2 "Model Check Point", house style 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mammocad.checkpoint import REQUIRED_KEYS, load_checkpoint, save_checkpoint
from mammocad.models import ShallowCNN, ShallowConfig


def _model() -> ShallowCNN:
    torch.manual_seed(0)
    return ShallowCNN(ShallowConfig(channels=(4, 8)))


def test_round_trip_weights_only(tmp_path):
    model = _model()
    path = tmp_path / "models" / "shallow_cnn.pt"
    config = {"train": {"lr": 1e-3, "epochs": 3}, "channels": (4, 8), "init": "scratch"}
    metrics = {"val_auc": np.float64(0.75), "val_acc": 0.5, "n": np.int64(12), "auc": None}
    save_checkpoint(path, model, "shallow_cnn", config, 3, metrics)
    assert [p.name for p in path.parent.iterdir()] == ["shallow_cnn.pt"]  # no temp file left

    # the file itself loads with weights_only=True, not only through load_checkpoint
    raw = torch.load(path, weights_only=True)
    assert set(raw) == set(REQUIRED_KEYS)
    ckpt = load_checkpoint(path)
    assert ckpt["backbone"] == "shallow_cnn" and ckpt["epoch"] == 3
    assert ckpt["config"] == {"train": {"lr": 1e-3, "epochs": 3}, "channels": [4, 8],
                              "init": "scratch"}  # fmt: skip
    assert ckpt["metrics"] == {"val_auc": 0.75, "val_acc": 0.5, "n": 12, "auc": None}
    assert type(ckpt["metrics"]["val_auc"]) is float
    state = model.state_dict()
    assert list(ckpt["model"]) == list(state)
    for key, value in state.items():
        assert torch.equal(ckpt["model"][key], value), key
        assert ckpt["model"][key].dtype == value.dtype

    fresh = ShallowCNN(ShallowConfig(channels=(4, 8)))
    fresh.load_state_dict(ckpt["model"])
    fresh.eval(), model.eval()
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(fresh(x), model(x))


def test_state_dict_accepted_and_overwrite(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, {"w": torch.ones(2)}, "mobilenet_v2", {}, 1, {})
    save_checkpoint(path, {"w": torch.zeros(3)}, "mobilenet_v2", {}, 2, {})
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 2 and torch.equal(ckpt["model"]["w"], torch.zeros(3))


def test_unpicklable_metadata_rejected_before_writing(tmp_path):
    path = tmp_path / "m.pt"
    with pytest.raises(TypeError, match="metrics.when"):
        save_checkpoint(path, {"w": torch.ones(1)}, "x", {}, 1, {"when": object()})
    assert not path.exists()


def test_dict_without_model_names_path_and_key(tmp_path):
    path = tmp_path / "nomodel.pt"
    torch.save({"backbone": "x", "config": {}, "epoch": 1, "metrics": {}}, path)
    with pytest.raises(ValueError, match=r"nomodel\.pt.*'model'"):
        load_checkpoint(path)


def test_bare_state_dict_rejected(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(_model().state_dict(), path)
    with pytest.raises(ValueError, match=r"bare\.pt.*missing key 'model'"):
        load_checkpoint(path)


def test_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, _model(), "shallow_cnn", {}, 1, {})
    data = good.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.pt"):
        load_checkpoint(cut)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pt"):
        load_checkpoint(text)
    listed = tmp_path / "list.pt"
    torch.save([1, 2], listed)
    with pytest.raises(ValueError, match="not a dict"):
        load_checkpoint(listed)
    with pytest.raises(FileNotFoundError, match="absent"):
        load_checkpoint(tmp_path / "absent.pt")
