"""Per-backbone tests of the paper §4.3 (Table 1) models, and their offline weight caches."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torch.nn.functional as F
from fresh import fresh_interpreter
from torch import nn

from mammocad.models import (
    BACKBONES,
    OFFLINE_ENV,
    WeightsUnavailable,
    build_model,
    bundled,
    count_parameters,
    freeze_layers,
    get_module,
    get_spec,
)
from mammocad.models import backbones as bb
from mammocad.models._torchvision_compat import import_timm, import_torchvision

# (total, trainable with the default frozen layers of an ImageNet init), each with a
# two-class head.
EXPECTED_PARAMS = {
    "alexnet": (57_012_034, 56_988_738),
    "googlenet": (5_601_954, 5_477_218),
    "mobilenet_v1": (3_209_026, 3_178_370),
    "mobilenet_v2": (2_226_434, 2_210_642),
    "resnet50": (23_512_130, 23_286_786),
    "vgg16": (134_268_738, 132_533_250),
    "vgg19": (139_578_434, 137_252_866),
}

# 64 px is above every architecture's minimum (AlexNet's is 63) and keeps CPU time low.
SIDE = 64


def _frozen(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_registry_names():
    assert BACKBONES.names() == sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_forward_backward(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    model, init = build_model(name, "scratch")
    assert init == "scratch"
    total = EXPECTED_PARAMS[name][0]
    assert count_parameters(model) == (total, total)  # scratch: frozen random layers teach nothing
    freeze_layers(model, spec.default_frozen, keep_trainable=(spec.classifier,))
    assert count_parameters(model) == EXPECTED_PARAMS[name]

    head = get_module(model, spec.classifier)
    assert isinstance(head, nn.Linear) and head.out_features == 2
    get_module(model, spec.cam_target_layer)

    model.train()
    out = model(torch.randn(2, 3, SIDE, SIDE))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2)
    loss = F.cross_entropy(out, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()

    assert spec.default_frozen
    n_frozen = 0
    for pname, param in model.named_parameters():
        frozen = _frozen(pname, spec.default_frozen)
        n_frozen += frozen
        assert param.requires_grad is not frozen, pname
        if frozen:
            assert param.grad is None, pname
        else:
            assert param.grad is not None, pname
            assert torch.isfinite(param.grad).all(), pname
    assert n_frozen > 0
    assert all(p.requires_grad for p in head.parameters())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError) as err:
        get_spec("lenet")
    for name in EXPECTED_PARAMS:
        assert name in str(err.value)
    with pytest.raises(KeyError, match="mobilenet_v2"):
        build_model("lenet", "scratch")


def test_unknown_init_rejected():
    with pytest.raises(ValueError, match="imagenet"):
        build_model("mobilenet_v2", "random")  # type: ignore[arg-type]


def test_freeze_override_and_head_always_trains():
    model, _ = build_model("mobilenet_v2", "scratch", freeze=())
    total, trainable = count_parameters(model)
    assert total == trainable

    model, _ = build_model("mobilenet_v2", "scratch", num_classes=3, freeze=("features",))
    _, trainable = count_parameters(model)
    assert trainable == 1280 * 3 + 3

    model, _ = build_model("mobilenet_v2", "scratch", freeze=("classifier",))
    assert all(p.requires_grad for p in model.classifier.parameters())

    with pytest.raises(ValueError, match="features.99"):
        build_model("mobilenet_v2", "scratch", freeze=("features.99",))


def test_freeze_prefix_matches_whole_components():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    frozen = freeze_layers(model, ("1",))
    assert frozen == 6
    assert not model[1].weight.requires_grad
    assert model[10].weight.requires_grad and model[11].weight.requires_grad


def test_get_module_paths():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Linear(2, 2)))
    assert get_module(model, "") is model
    assert get_module(model, "1.1") is model[1][1]
    with pytest.raises(AttributeError, match="'7'"):
        get_module(model, "1.7")


def test_normalisation_matches_the_weights():
    tvm = import_torchvision().models
    timm = import_timm()
    for name in BACKBONES:
        spec = get_spec(name)
        if spec.source == "torchvision":
            transform = tvm.get_weight(spec.weights).transforms()
            mean, std = tuple(transform.mean), tuple(transform.std)
        else:
            cfg = timm.models.get_pretrained_cfg(spec.weights)
            mean, std = tuple(cfg.mean), tuple(cfg.std)
        assert spec.mean == pytest.approx(mean), name
        assert spec.std == pytest.approx(std), name
        assert spec.input_size == 224


# ------------------------------------------------------------------- offline weight caches


@pytest.fixture
def no_bundled(tmp_path, monkeypatch):
    """Hides the bundled int8 weights, as where the package lost them."""
    monkeypatch.setattr(bundled.load, "WEIGHTS_DIR", tmp_path / "no-bundled-weights")


@pytest.fixture
def unroutable(monkeypatch):
    """Points the network probe at TEST-NET-1 (RFC 5737), which no network routes."""
    real = bb.download._reachable
    monkeypatch.setattr(
        bb.download,
        "_reachable",
        lambda url, timeout: real("https://192.0.2.1/", min(timeout, 3.0)),
    )


def _torchvision_checkpoint(weights: str) -> Path:
    url = import_torchvision().models.get_weight(weights).url
    filename = os.path.basename(urlparse(url).path)
    return Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / filename


def _hf_snapshot(weights: str) -> Path:
    repo_id = import_timm().models.get_pretrained_cfg(weights).hf_hub_id
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(os.environ["HF_HUB_CACHE"]) / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


def test_imagenet_torchvision_loads_from_cache(caches):
    spec = get_spec("mobilenet_v2")
    reference = import_torchvision().models.mobilenet_v2()
    with torch.no_grad():
        reference.features[0][0].weight.fill_(0.125)
    path = _torchvision_checkpoint(spec.weights)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    model, init = build_model("mobilenet_v2", "imagenet", allow_download=False)
    assert init == "torchvision"
    assert torch.all(model.features[0][0].weight == 0.125)
    assert model.classifier[1].out_features == 2
    assert type(model.features[0][0]) is nn.Conv2d  # the library's padding, not TF's
    model, init = build_model("mobilenet_v2", "auto", allow_download=False)
    assert init == "torchvision"


def test_imagenet_googlenet_drops_aux_heads(caches):
    spec = get_spec("googlenet")
    reference = import_torchvision().models.googlenet(
        aux_logits=True, transform_input=True, init_weights=False
    )
    with torch.no_grad():
        reference.conv1.conv.weight.fill_(0.5)
    path = _torchvision_checkpoint(spec.weights)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)

    model, init = build_model("googlenet", "imagenet", allow_download=False)
    assert init == "torchvision"
    assert torch.all(model.conv1.conv.weight == 0.5)
    assert model.aux1 is None and model.aux2 is None and model.transform_input
    scratch, _ = build_model("googlenet", "scratch")
    assert scratch.transform_input
    assert scratch.state_dict().keys() == model.state_dict().keys()


def test_imagenet_timm_loads_from_hf_cache(caches, monkeypatch):
    from safetensors.torch import save_file

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hugging Face hub was contacted")

    monkeypatch.setattr(import_timm().models._hub, "hf_hub_download", no_hub)

    spec = get_spec("mobilenet_v1")
    reference = import_timm().create_model("mobilenetv1_100")
    with torch.no_grad():
        reference.conv_stem.weight.fill_(0.25)
    save_file(reference.state_dict(), _hf_snapshot(spec.weights) / "model.safetensors")

    model, init = build_model("mobilenet_v1", "imagenet", allow_download=False)
    assert init == "timm"
    assert torch.all(model.conv_stem.weight == 0.25)
    assert model.classifier.out_features == 2


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v1"])
def test_empty_cache_imagenet_fails_fast(caches, unroutable, no_bundled, name):
    start = time.monotonic()
    with pytest.raises(WeightsUnavailable) as err:
        build_model(name, "imagenet")
    assert time.monotonic() - start < 15
    message = str(err.value)
    assert repr(name) in message and "unreachable" in message
    assert str(caches) in message  # where the weights were looked for
    assert "bundled int8" in message


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v1"])
def test_empty_cache_auto_falls_back_to_scratch(caches, no_bundled, caplog, name):
    with caplog.at_level(logging.WARNING, logger="mammocad.models.backbones"):
        model, init = build_model(name, "auto", allow_download=False)
    assert init == "scratch"
    assert any(name in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    total = EXPECTED_PARAMS[name][0]
    assert count_parameters(model) == (total, total)  # nothing frozen for scratch


def test_offline_env_skips_the_network(caches, no_bundled, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")

    def no_probe(url, timeout):
        raise AssertionError("network probed although downloads are disabled")

    monkeypatch.setattr(bb.download, "_reachable", no_probe)
    with pytest.raises(WeightsUnavailable, match="downloading is disabled"):
        build_model("mobilenet_v1", "imagenet")


def test_probe_of_unroutable_host_is_quick():
    start = time.monotonic()
    assert not bb.download._reachable("https://192.0.2.1/", 1.0)
    assert time.monotonic() - start < 3


def test_download_checks_the_file_name_hash(tmp_path):
    payload = b"weights" * 1000
    digest = hashlib.sha256(payload).hexdigest()
    source = tmp_path / "source.bin"
    source.write_bytes(payload)

    good = tmp_path / "cache" / f"net-{digest[:8]}.pth"
    bb.download._download(source.as_uri(), good, timeout=5.0)
    assert good.read_bytes() == payload

    bad = tmp_path / "cache" / "net-deadbeef.pth"
    with pytest.raises(WeightsUnavailable, match="SHA-256"):
        bb.download._download(source.as_uri(), bad, timeout=5.0)
    assert sorted(p.name for p in bad.parent.iterdir()) == [good.name]


def test_torchvision_and_timm_import_in_fresh_interpreter():
    code = (
        "import json, torch\n"
        "lib = torch.library.Library('torchvision', 'FRAGMENT')\n"
        "lib.define('nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor')\n"
        "from mammocad.models import _torchvision_compat as c\n"
        "defined = c.ensure_torchvision_ops()\n"
        "tv = c.import_torchvision()\n"
        "import timm\n"
        "out = tv.models.mobilenet_v2().eval()(torch.zeros(1, 3, 32, 32)).shape[1]\n"
        "print(json.dumps({'defined': defined, 'out': out, 'nms': c._op_exists('nms'),"
        " 'qnms': c._op_exists('qnms'), 'again': c.ensure_torchvision_ops()}))\n"
    )
    result = fresh_interpreter(code)
    assert "nms" not in result["defined"]  # an existing schema is left alone
    assert set(result["defined"]) <= {"qnms"}
    assert result == {**result, "out": 1000, "nms": True, "qnms": True, "again": []}


def test_torchvision_imports_without_torch_dynamo():
    """torchvision's one use of ``torch._dynamo`` at import is deferred; the real package
    is what a later import (timm's, here) gets, and a torchvision model still runs."""
    code = (
        "import json, sys, time, torch\n"
        "from mammocad.models import _torchvision_compat as c\n"
        "tv = c.import_torchvision()\n"
        "after_tv = 'torch._dynamo' in sys.modules\n"
        "stand_in = tv.ops.roi_align.__globals__['is_compile_supported']\n"
        "out = tv.models.mobilenet_v2().eval()(torch.zeros(1, 3, 32, 32)).shape[1]\n"
        "timm = c.import_timm()\n"
        "import torch._dynamo\n"
        "print(json.dumps({'after_tv': after_tv, 'out': out,"
        " 'real': hasattr(torch._dynamo, 'disable') and bool(torch._dynamo.__file__),"
        " 'deferred': stand_in is c._is_compile_supported,"
        " 'supported': stand_in('cpu') == torch._dynamo.utils.is_compile_supported('cpu'),"
        " 'timm': timm.create_model('mobilenetv1_100').eval()(torch.zeros(1, 3, 32, 32)).shape[1]}))\n"
    )
    result = fresh_interpreter(code)
    assert result == {
        "after_tv": False,
        "out": 1000,
        "real": True,
        "deferred": True,
        "supported": True,
        "timm": 1000,
    }


def test_a_module_needing_more_of_torch_dynamo_gets_the_real_one():
    """``torchvision.tv_tensors`` calls ``torch.compiler.disable`` at import: through the
    stand-in it gets the real ``torch._dynamo``, and no stand-in is left behind."""
    code = (
        "import json, sys, torch\n"
        "from mammocad.models import _torchvision_compat as c\n"
        "c.ensure_torchvision_ops()\n"
        "tvt = c._import_deferring_dynamo('torchvision.tv_tensors')\n"
        "dyn = sys.modules['torch._dynamo']\n"
        "print(json.dumps({'real': bool(getattr(dyn, '__file__', None)),"
        " 'utils': bool(getattr(sys.modules['torch._dynamo.utils'], '__file__', None)),"
        " 'attr': torch._dynamo is dyn, 'image': tvt.Image(torch.zeros(1, 2, 2)).shape[0]}))\n"
    )
    result = fresh_interpreter(code)
    assert result == {"real": True, "utils": True, "attr": True, "image": 1}
