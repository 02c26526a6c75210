"""The bundled int8 TFLite ImageNet weights of the MobileNets, converted to float.

The float models are checked against the TFLite interpreter (``ai-edge-litert``, the test
extra) end to end, and layer by layer on TFLite's own intermediate activations; against
ImageNet classes on two photographs; and through the paths that build or rebuild them.
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import warnings
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from shared_data import IN_CI, require, shared_dir
from torch import nn

from mammocad.checkpoint import save_checkpoint
from mammocad.models import WeightsUnavailable, build_model, count_parameters, get_spec
from mammocad.models import bundled as bd
from mammocad.models.backbones import SOURCES, build_architecture

V2, V1 = "mobilenet_v2", "mobilenet_v1"
# torchvision's ImageNet indices: the domestic cats, and the three ranges of birds.
CATS = set(range(281, 286))
BIRDS = set(range(7, 25)) | set(range(80, 101)) | set(range(127, 147))
# Output tensors compared end to end: v2's logits before the softmax, v1's pooled features.
OUTPUT_TENSOR = {V2: "MobilenetV2/Logits/Squeeze1", V1: "MobilenetV1/Logits/AvgPool_1a/AvgPool"}
# mini-MIAS abnormalities (Info.txt: x, y from the bottom edge, radius), all benign masses.
MIAS_ROIS = {"mdb001": (535, 425, 197), "mdb002": (522, 280, 69), "mdb005": (477, 133, 30)}


def _coral() -> Path:
    return require(shared_dir() / "weights" / "coral", "the coral test photographs")


def _photo(name: str) -> np.ndarray:
    bgr = cv2.imread(str(require(_coral() / f"{name}.bmp", f"{name}.bmp")))
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)


@cache
def _mias_patches() -> tuple[np.ndarray, ...]:
    """224-px RGB patches around real mini-MIAS masses, as the pipeline crops them."""
    archive = require(
        shared_dir() / "data" / "mias-sample" / "mias-sample.tar.gz", "mini-MIAS sample"
    )
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            stem = Path(member.name).stem
            if stem in MIAS_ROIS and member.name.endswith(".pgm"):
                data = np.frombuffer(tar.extractfile(member).read(), np.uint8)
                image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
                x, y, r = MIAS_ROIS[stem]
                row, half = image.shape[0] - y, max(int(1.5 * r), 112)
                crop = image[max(row - half, 0) : row + half, max(x - half, 0) : x + half]
                crop = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA)
                found[stem] = np.repeat(crop[..., None], 3, axis=-1)
            if len(found) == len(MIAS_ROIS):
                break
    return tuple(found[k] for k in sorted(found))


def _blob_patch(seed: int = 0) -> np.ndarray:
    """A deterministic grey patch with a bright blob, mammogram-like enough for one layer."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:224, :224]
    grey = cv2.GaussianBlur(110 + rng.normal(0, 12, (224, 224)), (0, 0), 2)
    blob = 90 * np.exp(-((yy - 120) ** 2 + (xx - 100) ** 2) / (2 * 30.0**2))
    return np.repeat(np.clip(grey + blob, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _normalised(rgb: np.ndarray, name: str) -> torch.Tensor:
    """What the float model takes for the pixels TFLite reads as ``(p - 128) / 128``."""
    spec = get_spec(name)
    x01 = torch.from_numpy(rgb.astype(np.float32) / 256.0).permute(2, 0, 1)[None]
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x01 - mean) / std


def _output(model: nn.Module, name: str, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        if name == V2:
            return model(x)[0].numpy()
        return model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy()


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {name: bd.build_bundled(name).eval() for name in (V2, V1)}


def _interpreter(name: str):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        message = f"ai-edge-litert (test extra) is not installed, no TFLite reference: {err}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # preserve_all_tensors is "for debugging"
        interpreter = Interpreter(
            str(bd.bundled_path(get_spec(name).bundled)), experimental_preserve_all_tensors=True
        )
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, rgb: np.ndarray) -> dict:
    """Runs TFLite on uint8 RGB; returns ``tensor index -> dequantized float array``."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[None])
    interpreter.invoke()

    def value(detail):
        scale, zero = detail["quantization"]
        raw = interpreter.get_tensor(detail["index"]).astype(np.float32)
        return (raw - zero) * scale if scale else raw

    details = interpreter.get_tensor_details()
    return {d["index"]: (d, value) for d in details}


# ------------------------------------------------------------------------ ImageNet classes


def test_v2_classifies_the_photographs(models):
    labels = bd.imagenet_labels()
    assert len(labels) == 1000 and labels[281] == "tabby, tabby cat"
    for photo, wanted in (("cat", CATS), ("bird", BIRDS)):
        logits = _output(models[V2], V2, _normalised(_photo(photo), V2))
        top5 = np.argsort(-logits)[:5].tolist()
        logging.getLogger(__name__).info("%s: %s", photo, [labels[i] for i in top5])
        assert wanted & set(top5), [labels[i] for i in top5]
        assert top5[0] in wanted


# ------------------------------------------------------------------------ against TFLite


@pytest.mark.parametrize("name", [V2, V1])
def test_outputs_correlate_with_tflite(models, name):
    interpreter = _interpreter(name)
    images = [_photo("cat"), _photo("bird"), *_mias_patches()]
    for k, rgb in enumerate(images):
        tensors = _run(interpreter, rgb)
        detail, value = next(v for v in tensors.values() if v[0]["name"] == OUTPUT_TENSOR[name])
        reference = value(detail).reshape(-1)
        if name == V2:
            reference = reference[1:]  # TF's background class
        ours = _output(models[name], name, _normalised(rgb, name))
        assert ours.shape == reference.shape == ((1000,) if name == V2 else (1024,))
        r = np.corrcoef(ours, reference)[0, 1]
        assert r >= 0.99, f"image {k}: Pearson r {r:.4f}"


@pytest.mark.parametrize("name", [V2, V1])
def test_every_layer_matches_tflite(models, name):
    """Each layer, fed TFLite's own input activation, gives TFLite's output within 1 step.

    End to end the int8 model drifts from the float one (its rounding accumulates, most on
    low-contrast input); one layer at a time there is nothing to accumulate, so weights,
    biases, folded batch-norm and padding must all be exact.
    """
    import tflite

    spec = get_spec(name)
    path = bd.bundled_path(spec.bundled)
    graph = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0)
    tensors = _run(_interpreter(name), _blob_patch())
    model = models[name]
    targets = bd.weighted_layers(model, spec.classifier)
    layers = bd.read_tflite(path)
    assert len(layers) == len(targets) - (name == V1)  # v1's file has no classifier

    def value(index: int) -> tuple[np.ndarray, float]:
        detail, read = tensors[index]
        return read(detail), float(detail["quantization"][0])

    for layer, (where, module, bn) in zip(layers, targets, strict=False):
        op = graph.Operators(layer.op_index)
        x, _ = value(int(op.Inputs(0)))
        expected, step = value(int(op.Outputs(0)))
        x = torch.from_numpy(x).permute(0, 3, 1, 2)
        if isinstance(module, bd.TFInputConv2d):  # from [-1, 1] to the spec's normalisation
            mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (spec.mean, spec.std))
            x = ((x + 1) / 2 - mean) / std
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                y = module(x.flatten(1))
                expected = expected.reshape(1, -1)[:, 1:]
            else:
                # the plain batch-norm of timm's BatchNormAct2d, without its activation
                y = nn.BatchNorm2d.forward(bn, module(x)).permute(0, 2, 3, 1)
        options = (
            tflite.DepthwiseConv2DOptions()
            if layer.op == "DEPTHWISE_CONV_2D"
            else tflite.Conv2DOptions()
        )
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        if options.FusedActivationFunction() == tflite.ActivationFunctionType.RELU6:
            y = y.clamp(0, 6)
        error = np.abs(y.numpy().reshape(expected.shape) - expected).max()
        assert error <= 1.01 * step, f"{where}: off by {error / step:.2f} quantization steps"


# ------------------------------------------------------------------------ damaged files


def _copy(tmp_path: Path, data: bytes, filename: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / filename).write_bytes(data)
    return tmp_path / filename


@pytest.mark.parametrize("damage", ["missing", "truncated", "random", "bit-flip"])
def test_damaged_file_is_named(tmp_path, monkeypatch, damage):
    filename = get_spec(V2).bundled
    good = bd.bundled_path(filename).read_bytes()
    folder = tmp_path / "weights"
    folder.mkdir()
    if damage == "truncated":
        _copy(folder, good[: len(good) // 2], filename)
    elif damage == "random":
        _copy(folder, np.random.default_rng(0).bytes(100_000), filename)
    elif damage == "bit-flip":  # still a valid flatbuffer: only the digest tells
        flipped = bytearray(good)
        flipped[len(good) // 2] ^= 0x10
        _copy(folder, bytes(flipped), filename)
    monkeypatch.setattr(bd.load, "WEIGHTS_DIR", folder)
    with pytest.raises(bd.BundledWeightsUnavailable) as err:
        bd.build_bundled(V2)
    message = str(err.value)
    assert isinstance(err.value, WeightsUnavailable)
    assert str(folder / filename) in message and "\n" not in message
    assert ("missing" if damage == "missing" else "truncated or corrupt") in message
    if damage in ("truncated", "random"):  # the parser alone, without the digest, refuses too
        with pytest.raises(bd.BundledWeightsUnavailable, match="not a readable TFLite"):
            bd.read_tflite(folder / filename)


@pytest.mark.parametrize(
    ("name", "other", "tensor", "found", "expected"),
    [
        (V2, V1, "MobilenetV1/MobilenetV1/Conv2d_1_pointwise/", (64, 32, 1, 1), (16, 32, 1, 1)),
        (V1, V2, "MobilenetV2/expanded_conv/project/", (16, 32, 1, 1), (64, 32, 1, 1)),
    ],
)
def test_other_architecture_is_one_line(name, other, tensor, found, expected):
    spec = get_spec(name)
    model = bd.tf_architecture(spec.builder(False), spec.mean, spec.std)
    with pytest.raises(bd.BundledWeightsMismatch) as err:
        bd.load_tflite_weights(
            model, bd.bundled_path(get_spec(other).bundled), spec.classifier, label=name
        )
    message = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in message
    assert tensor in message and name in message
    assert f"has shape {found}, expected {expected}" in message


# ------------------------------------------------------------------------ build_model


@pytest.mark.parametrize("name", [V2, V1])
def test_empty_caches_give_bundled_weights(caches, models, name):
    spec = get_spec(name)
    model, source = build_model(name, "imagenet", allow_download=False)
    assert source == "bundled-int8" and source in SOURCES
    reference = models[name].state_dict()
    state = model.state_dict()
    assert state.keys() == reference.keys()
    classifier = spec.classifier + "."
    for key, value in state.items():
        if not key.startswith(classifier):
            assert torch.equal(value, reference[key]), key
    assert model.get_submodule(spec.classifier).out_features == 2
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert isinstance(first, bd.TFSamePadConv2d)
    # ImageNet features: the default early layers are frozen
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(spec.default_frozen) for n in frozen)

    model, source = build_model(name, "auto", allow_download=False)
    assert source == "bundled-int8"


def test_bundled_unreadable_imagenet_fails_and_auto_trains_from_scratch(
    caches, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(bd.load, "WEIGHTS_DIR", tmp_path / "nowhere")
    with pytest.raises(WeightsUnavailable) as err:
        build_model(V2, "imagenet", allow_download=False)
    message = str(err.value)
    assert "downloading is disabled" in message and "bundled int8" in message
    assert str(tmp_path / "nowhere" / get_spec(V2).bundled) in message

    with caplog.at_level(logging.WARNING):
        model, source = build_model(V2, "auto", allow_download=False)
    assert source == "scratch"
    total, trainable = count_parameters(model)
    assert total == trainable


def test_scratch_trains_everything_unless_told(caches, caplog):
    with caplog.at_level(logging.WARNING, logger="mammocad.models.backbones"):
        model, source = build_model("alexnet", "auto", allow_download=False)
    assert source == "scratch"
    total, trainable = count_parameters(model)
    assert total == trainable
    assert any(
        "bundled only for mobilenet_v1, mobilenet_v2" in r.getMessage() for r in caplog.records
    )

    model, _ = build_model(V2, "scratch")
    assert count_parameters(model)[1] == count_parameters(model)[0]
    model, _ = build_model(V2, "scratch", freeze=("features.0", "features.1"))
    for pname, param in model.named_parameters():
        assert param.requires_grad is not pname.startswith(("features.0.", "features.1.")), pname


# ------------------------------------------------------------------------ reloading, export


def test_checkpoint_round_trip_keeps_tf_padding(caches, tmp_path):
    from mammocad.checkpoint import load_trained_backbone
    from mammocad.predict.networks import _backbone_model

    torch.manual_seed(0)
    model, source = build_model(V2, "imagenet", allow_download=False)
    model.eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, V2, {}, 1, {"init": source})
    # an odd size too: SAME padding depends on the input size
    inputs = [torch.randn(1, 3, 224, 224), torch.randn(1, 3, 97, 131)]
    with torch.no_grad():
        expected = [model(x) for x in inputs]

        rebuilt = build_architecture(V2, "bundled-int8").eval()
        rebuilt.load_state_dict(model.state_dict())
        for loaded in (rebuilt, load_trained_backbone(path)[0], _backbone_model(path)[0]):
            for x, y in zip(inputs, expected, strict=True):
                assert torch.equal(loaded(x), y)

        # the library's architecture loads the same state dict but computes another function
        plain = build_architecture(V2, "scratch").eval()
        plain.load_state_dict(model.state_dict())
        assert not torch.allclose(plain(inputs[0]), expected[0], atol=1e-3)

    # checkpoints without a recorded source rebuild the library's architecture
    save_checkpoint(path, plain, V2, {}, 1, {})
    old = load_trained_backbone(path)[0]
    assert not any(isinstance(m, bd.TFSamePadConv2d) for m in old.modules())
    with pytest.raises(ValueError, match="unknown init source"):
        build_architecture(V2, "int8")


def test_torchscript_reproduces_the_model(models):
    model = models[V2]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model, x, check_trace=False)
        assert torch.allclose(traced(x), model(x), atol=1e-5)


@pytest.mark.slow
def test_onnx_reproduces_the_model(models, tmp_path):
    import onnxruntime as ort

    model = models[V2]
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = model(x)
        torch.onnx.export(model, x, str(tmp_path / "m.onnx"), opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert np.allclose(out, expected.numpy(), atol=1e-4)


def test_tf_same_padding_pads_after():
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    same = bd.architecture._rebuilt(conv, bd.TFSamePadConv2d)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF: 0 rows/columns before, 1 after; the first output sums x[0:3, 0:3]
    assert same(x)[0, 0, 0, 0] == x[0, 0, :3, :3].sum()
    assert torch.equal(same(x), F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, stride=2))
    assert same.state_dict().keys() == conv.state_dict().keys()


# ------------------------------------------------------------------------ provenance


def test_notice_names_origin_and_digests():
    notice = (bd.WEIGHTS_DIR / "NOTICE").read_text()
    assert "google-coral/test_data" in notice and "104342d" in notice
    assert "Apache" in notice and (bd.WEIGHTS_DIR / "LICENSE").is_file()
    for filename in [*bd.SHA256, bd.LABELS_FILE]:
        digest = hashlib.sha256((bd.WEIGHTS_DIR / filename).read_bytes()).hexdigest()
        assert filename in notice and digest in notice, filename
        assert bd.SHA256.get(filename, digest) == digest
