"""Tests of the shallow full-mammogram CNN (paper Fig. 2)."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mammocad.models import ShallowCNN, ShallowConfig, get_module


def test_forward_backward_on_mammogram_sized_input():
    torch.manual_seed(0)
    model = ShallowCNN()
    x = torch.randn(3, 1, 256, 160)
    out = model(x)
    assert out.shape == (3, 2)
    loss = F.cross_entropy(out, torch.tensor([0, 1, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name


def test_default_architecture():
    model = ShallowCNN()
    assert len(model.features) == 4
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128]
    assert convs[0].in_channels == 1
    assert model.dropout.p == 0.3
    assert model.classifier.in_features == 128 and model.classifier.out_features == 2


def test_config_sets_depth_and_widths():
    model = ShallowCNN(ShallowConfig(channels=(8, 12), dropout=0.0), num_classes=3)
    assert len(model.features) == 2
    assert model(torch.randn(2, 1, 20, 36)).shape == (2, 3)


def test_cam_target_layer_is_last_conv_block():
    model = ShallowCNN()
    target = get_module(model, model.cam_target_layer)
    captured = {}
    target.register_forward_hook(lambda mod, inp, out: captured.setdefault("out", out))
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 1, 256, 160))
    assert captured["out"].shape == (1, 128, 16, 10)
    assert get_module(model, model.classifier_layer) is model.classifier


@pytest.mark.parametrize(
    "kwargs", [{"channels": ()}, {"channels": (16, 0)}, {"dropout": 1.0}, {"dropout": -0.1}]
)
def test_invalid_config_rejected(kwargs):
    with pytest.raises(ValueError):
        ShallowConfig(**kwargs)


def test_overfits_tiny_set():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 32, 32)
    y = torch.arange(16) % 2
    model = ShallowCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == 1.0


def test_relu_after_pooling_matches_relu_before_it_exactly():
    """The block pools before its ReLU: outputs and every gradient equal the textbook order's."""
    torch.manual_seed(0)
    model = ShallowCNN(ShallowConfig(channels=(4, 8), pooling="max"))
    assert list(model.features.block0._modules) == ["conv", "bn", "pool", "relu"]
    textbook = copy.deepcopy(model)
    for block in textbook.features:
        block._modules = OrderedDict(
            (name, block._modules[name]) for name in ("conv", "bn", "relu", "pool")
        )
    x = torch.randn(3, 1, 32, 24)
    y = torch.tensor([0, 1, 1])
    grads = []
    for net in (model, textbook):
        net.train()
        torch.manual_seed(1)  # the same dropout mask
        out = net(x)
        nn.functional.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    (out_a, grad_a), (out_b, grad_b) = grads
    assert torch.equal(out_a, out_b)
    assert all(torch.equal(a, b) for a, b in zip(grad_a, grad_b, strict=True))
    # the reordering matters only if some pooled windows hold negative values
    pre_relu = model.features.block0.pool(model.features.block0.bn(model.features.block0.conv(x)))
    assert (pre_relu < 0).any()
