"""Where and how the training loop runs: device choice, mixed precision, channels-last.

The CUDA paths are checked by resolving devices against a patched ``torch.cuda``; the
numerical paths (bfloat16 autocast, NHWC layout) run for real on the CPU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mammocad.config import ConfigError, from_dict
from mammocad.distributed import SINGLE, DistContext
from mammocad.io import write_png
from mammocad.models import ShallowCNN, ShallowConfig
from mammocad.models.data import ImageSet, label_malignant
from mammocad.train import TrainConfig, fit, predict_proba, resolve_device
from stages.common import training_device

SIDE = 32


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """An easy task: the malignant patches hold a bright 6×6 square."""
    root = tmp_path_factory.mktemp("patches")
    out = {}
    for name, n, seed in (("train", 64, 1), ("val", 32, 2)):
        rng = np.random.default_rng(seed)
        rows = []
        for i in range(n):
            image = rng.normal(0.3, 0.1, (SIDE, SIDE))
            if i % 2:
                y, x = rng.integers(2, SIDE - 8, size=2)
                image[y : y + 6, x : x + 6] += 0.25
            rel = f"{name}_{i:03d}.png"
            write_png(root / rel, (np.clip(image, 0, 1) * 65535).astype(np.uint16))
            rows.append(
                {
                    "image_id": rel,
                    "patient_id": f"P{i}",
                    "pathology": "MALIGNANT" if i % 2 else "BENIGN",
                    "image_path": rel,
                }
            )
        out[name] = ImageSet(pd.DataFrame(rows), root, label_malignant, mean=(0.3,), std=(0.15,))
    return out


def _model() -> ShallowCNN:
    torch.manual_seed(0)
    return ShallowCNN(ShallowConfig(channels=(4, 8), dropout=0.1))


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(
        **{"epochs": 5, "batch_size": 8, "lr": 1e-2, "patience": 0, "threads": 1, **kw}
    )


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _fake_cuda(monkeypatch, bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Old GPU")


# --------------------------------------------------------------------------- device choice


def test_device_on_a_machine_without_cuda(monkeypatch):
    _no_cuda(monkeypatch)
    assert resolve_device(_cfg(), SINGLE) == torch.device("cpu")
    assert resolve_device(_cfg(device="cpu", mixed_precision="bf16"), SINGLE).type == "cpu"
    with pytest.raises(ValueError, match=r"finetune\.train\.device=cuda but no CUDA device"):
        resolve_device(_cfg(device="cuda"), SINGLE, "finetune.train")
    with pytest.raises(ValueError, match=r"shallow\.train\.mixed_precision=fp16 needs a CUDA"):
        resolve_device(_cfg(mixed_precision="fp16"), SINGLE, "shallow.train")


def test_device_on_a_machine_with_cuda(monkeypatch):
    _fake_cuda(monkeypatch)
    assert resolve_device(_cfg(), SINGLE) == torch.device("cuda", 0)
    assert resolve_device(_cfg(device="cuda", mixed_precision="fp16"), SINGLE).type == "cuda"
    # asked for explicitly, the CPU is kept even where a GPU is visible
    assert resolve_device(_cfg(device="cpu"), SINGLE) == torch.device("cpu")
    _fake_cuda(monkeypatch, bf16=False)
    with pytest.raises(ValueError, match="Old GPU has no bfloat16 support; use fp16"):
        resolve_device(_cfg(mixed_precision="bf16"), SINGLE)


def test_device_under_a_process_group_follows_the_backend(monkeypatch):
    _fake_cuda(monkeypatch)
    gloo = DistContext(rank=1, world_size=2, backend="gloo")
    nccl = DistContext(1, 2, 1, "nccl", torch.device("cuda", 1))
    # auto takes what the process group decided, GPU visible or not
    assert resolve_device(_cfg(), gloo) == torch.device("cpu")
    assert resolve_device(_cfg(), nccl) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="MAMMOCAD_DIST_BACKEND=nccl"):
        resolve_device(_cfg(device="cuda"), gloo)
    with pytest.raises(ValueError, match="MAMMOCAD_DIST_BACKEND=gloo"):
        resolve_device(_cfg(device="cpu"), nccl)


def test_stage_check_names_the_params_key(monkeypatch):
    _no_cuda(monkeypatch)
    with pytest.raises(SystemExit, match=r"^params\.yaml: finetune\.train\.device=cuda"):
        training_device(_cfg(device="cuda"), SINGLE, "finetune.train")
    assert training_device(_cfg(), SINGLE, "finetune.train") == torch.device("cpu")


def test_config_values_and_unquoted_yaml_off():
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="int8")  # type: ignore[arg-type]
    # PyYAML reads an unquoted `off` as False: taken as "off" where "off" is a choice,
    # named in the error where it is not
    assert from_dict(TrainConfig, {"mixed_precision": False}, "t").mixed_precision == "off"
    with pytest.raises(ConfigError, match="'finetune.train.device'.*quote the value"):
        from_dict(TrainConfig, {"device": False}, "finetune.train")
    with pytest.raises(ConfigError, match="mixed_precision"):
        from_dict(TrainConfig, {"mixed_precision": True}, "t")
    cfg = from_dict(TrainConfig, {"mixed_precision": "bf16", "channels_last": True}, "t")
    assert (cfg.device, cfg.mixed_precision, cfg.channels_last) == ("auto", "bf16", True)


# --------------------------------------------------------------------------- numerics


def _watch(model: ShallowCNN) -> dict[str, list]:
    """Records, during training, the second conv's output dtype, input layout, cuDNN mode."""
    seen: dict[str, list] = {"dtype": [], "nhwc": [], "cudnn": []}
    conv = model.features.block1.conv

    def hook(module, inputs, output):
        if module.training:
            seen["dtype"].append(output.dtype)
            seen["nhwc"].append(inputs[0].is_contiguous(memory_format=torch.channels_last))
            seen["cudnn"].append(
                (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
            )

    conv.register_forward_hook(hook)
    return seen


def test_float32_default_records_its_settings(sets, monkeypatch):
    torch.backends.cudnn.benchmark = True
    _no_cuda(monkeypatch)
    model = _model()
    seen = _watch(model)
    result = fit(model, sets["train"], sets["val"], _cfg(), seed=3)
    assert set(seen["dtype"]) == {torch.float32} and not any(seen["nhwc"])
    assert (result.device, result.mixed_precision, result.channels_last) == ("cpu", "off", False)
    assert result.images_per_second > 0
    # no cuDNN autotuning while training, and the caller's settings back afterwards
    assert set(seen["cudnn"]) == {(False, True)}
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark = False


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights(sets):
    runs = {}
    for precision in ("off", "bf16"):
        model = _model()
        seen = _watch(model)
        cfg = _cfg(device="cpu", mixed_precision=precision, epochs=8, select_on="val_loss")
        runs[precision] = (model, fit(model, sets["train"], sets["val"], cfg, seed=3), seen)
    model, result, seen = runs["bf16"]
    # 64 images in batches of 8 over 8 epochs: every step's convolution ran in bfloat16
    assert seen["dtype"] == [torch.bfloat16] * 64
    assert result.mixed_precision == "bf16"
    assert all(v.dtype == torch.float32 for v in model.parameters())
    # other rounding, so other weights, but the model learns as the float32 one does
    reference = runs["off"][1]
    assert not torch.equal(
        result.best_state["classifier.weight"], reference.best_state["classifier.weight"]
    )
    prob = predict_proba(model, sets["val"])
    accuracy = np.mean((prob >= 0.5) == sets["val"].labels.numpy())
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(reference.history[-1]["val_acc"], abs=2 / 32)


def test_channels_last_feeds_nhwc_and_hands_back_nchw(sets):
    runs = {}
    for nhwc in (False, True):
        model = _model()
        seen = _watch(model)
        result = fit(model, sets["train"], sets["val"], _cfg(channels_last=nhwc), seed=3)
        runs[nhwc] = (model, result, seen)
    model, result, seen = runs[True]
    assert seen["nhwc"] == [True] * 40 and result.channels_last
    # the model and its best state come back in the usual layout, ready to save and export
    assert all(p.is_contiguous() for p in model.parameters())
    assert all(v.is_contiguous() for v in result.best_state.values())
    # the same computation in another memory order: equal up to float rounding
    reference = runs[False][1]
    for a, b in zip(reference.history, result.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=1 / 32)
    for key, value in reference.best_state.items():
        if value.is_floating_point():
            assert torch.allclose(result.best_state[key], value, rtol=1e-3, atol=2e-3), key
