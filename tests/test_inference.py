"""The inference builds of the patch networks (:mod:`mammocad.inference`)."""

from __future__ import annotations

import pytest
import torch
from fresh import fresh_interpreter
from torch import nn

from mammocad import inference
from mammocad.models import backbones


def _filled(model: nn.Module, seed: int = 3) -> nn.Module:
    """Every state entry from a seeded generator: same keys and shapes, same weights."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in sorted(model.state_dict().items()):
            if not t.is_floating_point():
                continue
            if key.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif t.ndim == 1:
                t.copy_(0.5 * torch.randn(t.shape, generator=gen) + key.endswith("weight"))
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / t[0].numel()) ** 0.5)
    return model.eval()


def _loaded(name: str, init: str, state: dict) -> nn.Module:
    model = inference.build_architecture(name, init)
    model.load_state_dict(state)
    return model.eval()


@pytest.mark.parametrize("init", ["scratch", "bundled-int8"])
@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_standalone_mobilenets_are_the_libraries_models(name, init):
    """The torchvision/timm-free MobileNets load the libraries' state dicts and compute
    the same function; fused for inference, they differ by float rounding only."""
    library = _filled(backbones.build_architecture(name, init))
    theirs = library.state_dict()
    ours = inference.build_architecture(name, init)
    assert type(ours) is inference.STANDALONE[name]
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.items()
    ]
    ours = _loaded(name, init, theirs)
    fused = inference.fuse_for_inference(_loaded(name, init, theirs))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.manual_seed(0)
    for shape in [(1, 3, 224, 224), (1, 3, 161, 130), (2, 3, 97, 96)]:  # even and odd sides
        x = torch.randn(shape)
        with torch.no_grad():
            expected = library(x)
            assert torch.equal(ours(x), expected)
            for layout in (torch.contiguous_format, torch.channels_last):
                got = fused(x.contiguous(memory_format=layout))
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_other_backbones_come_from_the_library():
    model = inference.build_architecture("alexnet", "scratch")
    assert type(model) is type(backbones.build_architecture("alexnet", "scratch"))
    assert inference.fuse_for_inference(model) is model and not model.training
    with pytest.raises(ValueError, match="unknown init source"):
        inference.build_architecture("mobilenet_v1", "bogus")
    with pytest.raises(KeyError, match="mobilenet_v2"):
        inference.build_architecture("mobilenet_v3", "scratch")


def test_standalone_build_imports_neither_torchvision_nor_timm():
    code = (
        "import sys, json\n"
        "from mammocad.inference import build_architecture, fuse_for_inference\n"
        "for name in ('mobilenet_v1', 'mobilenet_v2'):\n"
        "    for init in ('scratch', 'bundled-int8'):\n"
        "        fuse_for_inference(build_architecture(name, init))\n"
        "print(json.dumps(sorted(m for m in ('torchvision', 'timm', 'torch._dynamo')"
        " if m in sys.modules)))\n"
    )
    assert fresh_interpreter(code) == []


#: Classifier weight factors that give the test image's map contrast without saturating it.
HEAD_GAIN = {"mobilenet_v1": 0.2, "mobilenet_v2": 10.0}


@pytest.mark.parametrize(
    ("name", "init"),
    [("mobilenet_v1", "bundled-int8"), ("mobilenet_v1", "scratch"), ("mobilenet_v2", "scratch")],
)
def test_striped_cam_with_the_receptive_field_halo_is_the_whole_pass(name, init):
    """Stripes with :func:`cam_halo` rows of context give the whole pass's map; with one
    stripe stride less they do not (the halo is no larger than needed)."""
    import numpy as np

    from mammocad.localize import compute_heatmap

    spec = backbones.get_spec(name)
    model = _filled(inference.build_architecture(name, init))
    with torch.no_grad():
        backbones.get_module(model, spec.classifier).weight.mul_(HEAD_GAIN[name])
    model = inference.fuse_for_inference(model)
    halo = inference.cam_halo(model)
    rng = np.random.default_rng(0)
    image = (rng.random((1280, 192)) * 65535).astype(np.uint16)
    layers = (
        backbones.get_module(model, spec.cam_target_layer),
        backbones.get_module(model, spec.classifier),
    )
    common = dict(breast=np.ones(image.shape, bool))

    def heatmap(**kw):
        return compute_heatmap(model, image, 1.0, spec.mean, spec.std, *layers, **common, **kw)

    whole = heatmap()
    assert float(whole.values.std()) > 1e-2
    striped = heatmap(tile_pixels=192 * 384, halo=halo)
    np.testing.assert_allclose(striped.values, whole.values, atol=2e-5)
    short = heatmap(tile_pixels=192 * 384, halo=halo - 32)
    assert np.abs(short.values - whole.values).max() > 1e-3
