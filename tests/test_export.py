"""Deployment exports: ONNX, TorchScript and int8 files, their checks and the report."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mammocad import export as E
from mammocad.cli import main as cli_main
from mammocad.export import backbone as export_driver
from mammocad.export import writers
from mammocad.io import write_png
from mammocad.models.backbones import build_model, get_spec
from mammocad.models.data import ImageSet, label_malignant
from mammocad.report import deployment_markdown, deployment_table

SIDE = 64


def _patches(root, n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = i % 2
        image = rng.integers(0, 20000, (SIDE, SIDE)).astype(np.uint16)
        if label:  # malignant patches get a bright blob, so a model can tell them apart
            image[20:44, 20:44] += 30000
        name = f"p{seed}_{i}.png"
        write_png(root / name, image)
        rows.append(
            {
                "image_id": f"p{seed}_{i}",
                "patient_id": f"P{i // 2}",
                "pathology": ("BENIGN", "MALIGNANT")[label],
                "image_path": name,
            }
        )
    return ImageSet(pd.DataFrame(rows), root, label_malignant)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A scratch MobileNet-v2 (BN statistics set by a few training-mode passes) and data."""
    root = tmp_path_factory.mktemp("export")
    calibration, test = _patches(root, 24, 1), _patches(root, 12, 2)
    torch.manual_seed(0)
    model, _ = build_model("mobilenet_v2", "scratch", freeze=())
    spec = get_spec("mobilenet_v2")
    model.train()
    with torch.no_grad():
        x = calibration.get_batch(list(range(24)))[0].expand(-1, 3, -1, -1)
        for _ in range(3):
            model((x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / 0.25)
    model.eval()
    ckpt = {
        "backbone": "mobilenet_v2",
        "config": {"input": {"mean": list(spec.mean), "std": list(spec.std)}, "patch_px": 90.0},
    }
    return model, ckpt, calibration, test, root


@pytest.fixture(scope="module")
def exported(trained):
    model, ckpt, calibration, test, root = trained
    cfg = E.ExportConfig(calibration_images=16, latency_repeats=3)
    out = root / "out" / "mobilenet_v2"
    record = E.export_backbone(model, ckpt, calibration, test, 0.5, cfg, out)
    return record, out


def test_deploy_model_is_imageset_normalisation_then_softmax(trained):
    model, ckpt, _, test, _ = trained
    spec = get_spec("mobilenet_v2")
    normalised = ImageSet(
        test.frame, test.root, label_malignant, channels=3, mean=spec.mean, std=spec.std
    )
    deploy = E.DeployModel(model, spec.mean, spec.std).eval()
    with torch.no_grad():
        want = torch.softmax(model(normalised.get_batch([0, 1, 2])[0]), dim=1)
        got = deploy(test.get_batch([0, 1, 2])[0])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert torch.allclose(got.sum(1), torch.ones(3))


def test_files_and_fp32_exports_match_pytorch(exported, trained):
    record, out = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "model.int8.onnx",
        "model.json",
        "model.onnx",
        "model.torchscript.pt",
    ]
    for name in E.FP32_VARIANTS:
        assert record["checks"][name]["max_prob_diff"] < 1e-5
        assert record["checks"][name]["decision_agreement"] == 1.0
        assert record["checks"][name]["accuracy"] == record["eager"]["accuracy"]
    assert record["quantization"]["method"] == "static"
    assert record["quantization"]["calibration_images"] == 16
    # int8 weights: about a quarter of the FP32 file
    assert record["file_mb"]["onnx_int8"] < 0.4 * record["file_mb"]["onnx"]
    assert record["params_total"] == 2_226_434
    assert record["n_test"] == 12
    meta = json.loads((out / "model.json").read_text())
    assert meta["input"]["shape"] == [None, 1, SIDE, SIDE]
    assert meta["threshold"] == 0.5 and meta["preprocessing"]["patch_px"] == 90.0


def test_onnx_runtime_runs_the_graphs_on_new_input(exported, trained):
    import onnxruntime as ort

    model, ckpt, *_ = trained
    _, out = exported
    spec = get_spec("mobilenet_v2")
    deploy = E.DeployModel(model, spec.mean, spec.std).eval()
    x = torch.rand(5, 1, SIDE, SIDE)  # a batch of 5: the batch axis is dynamic
    with torch.no_grad():
        want = deploy(x).numpy()
    fp32 = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = fp32.run(None, {"patch": x.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    int8 = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    graph_ops = {
        n.op_type for n in __import__("onnx").load(str(out / "model.int8.onnx")).graph.node
    }
    assert {"QuantizeLinear", "DequantizeLinear"} <= graph_ops
    q = int8.run(None, {"patch": x.numpy()})[0]
    assert q.shape == (5, 2) and np.allclose(q.sum(1), 1, atol=1e-3)
    assert np.abs(q - want).max() < 0.2
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(x).numpy(), want, atol=1e-6)


def test_latency_and_speedup_are_recorded(exported):
    record, _ = exported
    lat = record["latency"]
    assert set(lat) == {"eager", "onnx", "onnx_int8"}
    assert all(v["median_ms"] > 0 and v["repeats"] == 3 for v in lat.values())
    assert record["speedup_int8_vs_eager"] == pytest.approx(
        lat["eager"]["median_ms"] / lat["onnx_int8"]["median_ms"], rel=1e-2
    )
    assert record["accuracy_cost_int8"] == pytest.approx(
        record["eager"]["accuracy"] - record["checks"]["onnx_int8"]["accuracy"], abs=1e-6
    )


def test_fp32_mismatch_fails_and_keeps_previous_output(trained, monkeypatch, tmp_path):
    model, ckpt, calibration, test, _ = trained
    out = tmp_path / "mobilenet_v2"
    out.mkdir()
    (out / "old.txt").write_text("previous export")
    real = E.export_onnx

    def wrong_graph(deploy, example, path, opset):
        other = E.DeployModel(
            build_model("mobilenet_v2", "scratch", freeze=())[0].eval(),
            deploy.mean.flatten().tolist(),
            deploy.std.flatten().tolist(),
        )
        torch.nn.init.normal_(other.model.classifier[-1].weight, std=5.0)
        real(other.eval(), example, path, opset)

    # patched where export_backbone looks it up
    monkeypatch.setattr(export_driver, "export_onnx", wrong_graph)
    cfg = E.ExportConfig(calibration_images=4, latency_repeats=1)
    with pytest.raises(RuntimeError, match="onnx export differs from PyTorch"):
        E.export_backbone(model, ckpt, calibration, test, 0.5, cfg, out)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert not list(tmp_path.glob(".mobilenet_v2.tmp-*"))


def test_quantization_methods(trained, exported, tmp_path):
    _, out = exported
    info = E.quantize_onnx(out / "model.onnx", tmp_path / "d.onnx", "auto", None)
    assert info["method"] == "dynamic" and info["fallback_reason"] == "no calibration images"
    assert (tmp_path / "d.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    with pytest.raises(ValueError, match="calibration"):
        E.quantize_onnx(out / "model.onnx", tmp_path / "s.onnx", "static", [])


def _int8_weight_extremes(path: Path) -> tuple[int, int]:
    import onnx
    from onnx import numpy_helper

    values = [
        numpy_helper.to_array(t)
        for t in onnx.load(str(path)).graph.initializer
        if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4  # conv weights
    ]
    assert values, f"{path.name}: no int8 convolution weights"
    return min(int(v.min()) for v in values), max(int(v.max()) for v in values)


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_reduce_range_keeps_weights_in_seven_bits(trained, exported, tmp_path, method):
    """7-bit weights reach at most ±64; the full range is used without it, and the record
    says which was done, as the export's metrics do."""
    _, _, calibration, _, _ = trained
    _, out = exported
    calib = E.calibration_batches(calibration, 8, seed=0) if method == "static" else None
    low, high = {}, {}
    for reduce in (True, False):
        path = tmp_path / f"{method}-{reduce}.onnx"
        info = E.quantize_onnx(out / "model.onnx", path, method, calib, reduce_range=reduce)
        assert info["method"] == method and info["reduce_range"] is reduce
        low[reduce], high[reduce] = _int8_weight_extremes(path)
    assert low[True] >= -64 and high[True] <= 64
    assert min(low[False], -high[False]) < -64  # per-channel scales use the full 8 bits


def test_export_records_reduce_range(exported):
    record, _ = exported
    assert record["quantization"]["reduce_range"] is True  # ExportConfig's default


def test_compare_value_table():
    ref = np.array([0.1, 0.4, 0.6, 0.9])
    probs = np.array([0.1, 0.55, 0.58, 0.9])
    labels = np.array([0, 0, 1, 1])
    got = E.compare(ref, probs, labels, threshold=0.5)
    assert got["max_prob_diff"] == pytest.approx(0.15)
    assert got["mean_prob_diff"] == pytest.approx(0.17 / 4)
    assert got["decision_agreement"] == 0.75  # the second patch crossed the threshold
    assert got["accuracy"] == 0.75 and got["roc_auc"] == 1.0


def test_calibration_subset_is_seeded_and_sized(trained):
    _, _, calibration, _, _ = trained
    a = E.calibration_batches(calibration, 10, seed=3, batch_size=4)
    b = E.calibration_batches(calibration, 10, seed=3, batch_size=4)
    assert [len(x) for x in a] == [4, 4, 2]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape[1:] == (1, SIDE, SIDE) and a[0].min() >= 0.0 and a[0].max() <= 1.0
    assert sum(len(x) for x in E.calibration_batches(calibration, 100, seed=3)) == 24


@pytest.mark.parametrize(
    ("key", "value"),
    [("quantization", "fp16"), ("threads", 0), ("calibration_images", 0), ("opset", 9)],
)
def test_config_rejects_bad_values_by_name(key, value):
    with pytest.raises(ValueError, match=key):
        E.ExportConfig(**{key: value})


def test_grey_patches_are_required(trained, tmp_path):
    model, ckpt, calibration, test, _ = trained
    rgb = ImageSet(test.frame, test.root, label_malignant, channels=3, mean=(0,) * 3, std=(1,) * 3)
    with pytest.raises(ValueError, match="test patches must be grey"):
        E.export_backbone(model, ckpt, calibration, rgb, 0.5, E.ExportConfig(), tmp_path / "x")


def test_deployment_report(exported):
    record, _ = exported
    other = json.loads(json.dumps(record))
    other["backbone"] = "alexnet"
    table = deployment_table({"mobilenet_v2": record, "alexnet": other})
    assert list(table["cnn"]) == ["AlexNet", "MobileNet-v2"]  # the paper's order
    row = table.iloc[1]
    assert row["params_m"] == 2.23
    assert row["speedup_int8"] == round(record["speedup_int8_vs_eager"], 2)
    assert row["quantization"] == "static"
    text = deployment_markdown(table, "synthetic")
    assert "| MobileNet-v2 | 2.23 |" in text
    assert "2 CPU thread(s)" in text and "12 test patches" in text
    assert "The int8 weights are 7-bit" in text  # other carries the same quantization record
    mean_diff = round(record["checks"]["onnx_int8"]["mean_prob_diff"], 4)
    assert row["mean_diff_int8"] == mean_diff and f"| {mean_diff:g} |" in text


def test_cli_export_errors_name_the_problem(tmp_path, capsys):
    assert cli_main(["export", str(tmp_path / "none.pt")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    ckpt = tmp_path / "m.pt"
    torch.save({"model": {}}, ckpt)
    assert cli_main(["export", str(ckpt), "--root", str(tmp_path)]) == 1
    assert "--root must be a pipeline folder" in capsys.readouterr().err


def test_torchscript_names_no_path_of_the_checkout(tmp_path):
    """``torch.jit.save`` records the absolute path of every source file a trace ran
    through; the export drops those records, so the same model exported from any checkout
    or environment is the same file (and ``dvc.lock`` keeps its hash)."""
    torch.manual_seed(0)
    net = build_model("mobilenet_v2", "scratch")[0].eval()
    model = E.DeployModel(net, [0.5] * 3, [0.25] * 3).eval()
    x = torch.rand(1, 1, 32, 32)
    roots = [
        str(Path(torch.__file__).parents[1]).encode(),
        str(Path(E.__file__).parents[2]).encode(),
    ]

    def naming(archive) -> list[str]:
        with zipfile.ZipFile(archive) as z:
            return [n for n in z.namelist() if any(r in z.read(n) for r in roots)]

    saved = io.BytesIO()
    torch.jit.save(torch.jit.trace(model, x), saved)
    assert naming(saved)  # what torch.jit.save writes names them
    writers.export_torchscript(model, x, tmp_path / "m.pt")
    assert naming(tmp_path / "m.pt") == []
    with zipfile.ZipFile(tmp_path / "m.pt") as z:
        assert not [n for n in z.namelist() if n.endswith(".debug_pkl")]
    with torch.no_grad():
        assert torch.equal(torch.jit.load(tmp_path / "m.pt")(x), model(x))


@pytest.fixture()
def export_cli(tmp_path, monkeypatch):
    """`mammocad export` up to its first export: checkpoints that load as MobileNet-v1
    runs, a pipeline folder whose patches are not read."""
    from mammocad.cli import export as cli_export

    monkeypatch.setattr(cli_export, "_load", lambda path: (None, {"backbone": "mobilenet_v1"}))
    monkeypatch.setattr(E, "patch_sets", lambda *dirs: (None, None))
    monkeypatch.setattr(E, "export_backbone", lambda *a, **k: pytest.fail("nothing exported"))
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "mobilenet_v1.pt")
        paths[-1].write_bytes(b"loaded by the patched _load")
    return paths


def test_cli_export_refuses_two_checkpoints_of_one_run(export_cli, tmp_path, capsys):
    args = ["export", *map(str, export_cli), "--root", str(tmp_path), "--threshold", "0.5"]
    assert cli_main([*args, "--out", str(tmp_path / "out")]) == 1
    assert "are both 'mobilenet_v1' runs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("record", "words"),
    [("{}", "no 'threshold' key"), ("not json", "cannot read"), ('{"threshold": 7}', "(0, 1)")],
)
def test_cli_export_names_a_bad_threshold_record(export_cli, tmp_path, capsys, record, words):
    path = tmp_path / "metrics" / "eval" / "mobilenet_v1.json"
    path.parent.mkdir(parents=True)
    path.write_text(record)
    args = ["export", str(export_cli[0]), "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    assert cli_main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and words in err[0], err
