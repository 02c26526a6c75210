"""Fine-tuning throughput per device, precision and memory layout, against the CPU in float32.

For each backbone, trains with the pipeline's loop (:func:`mammocad.train.fit` on an
:class:`~mammocad.models.data.ImageSet` of 16-bit PNG patches, the backbone's default
frozen layers, batch 64) under each variant of ``TrainConfig.device``,
``mixed_precision`` and ``channels_last``: the CPU in float32 (the reference), the CPU in
bfloat16 and channels-last, and where a CUDA GPU is visible the GPU in float32, float16,
bfloat16 (where supported) and each with channels-last. Every variant runs one warm-up
epoch, then ``--epochs`` timed epochs; the figure is training images per second over the
optimisation steps (``FitResult.images_per_second``, validation excluded).

Prints a row per backbone and variant with its images/s and its ratio to the CPU float32
reference; the last line is, over the backbones, the lowest speed-up of the fastest
variant.

Usage: ``python benchmarks/bench_train_device.py [--backbones mobilenet_v1 ...]
[--images 128] [--epochs 2] [--threads 0] [--cpu-only]``
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from bench_finetune import patches

from mammocad.models.backbones import build_model, get_spec
from mammocad.models.data import ImageSet, label_malignant
from mammocad.train import TrainConfig, fit


def variants(cpu_only: bool) -> list[tuple[str, str, bool]]:
    """``(device, mixed_precision, channels_last)`` of every variant this machine can run."""
    out = [("cpu", p, nhwc) for p in ("off", "bf16") for nhwc in (False, True)]
    if torch.cuda.is_available() and not cpu_only:
        precisions = ["off", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        out += [("cuda", p, nhwc) for p in precisions for nhwc in (False, True)]
    return out


def label(device: str, precision: str, nhwc: bool) -> str:
    dtype = {"off": "fp32", "bf16": "bf16", "fp16": "fp16"}[precision]
    return f"{device} {dtype}" + (" channels-last" if nhwc else "")


def throughput(name: str, sets: list[ImageSet], cfg: TrainConfig, epochs: int) -> float:
    """Training images/s of ``epochs`` epochs after a one-epoch warm-up."""
    torch.manual_seed(0)
    model, _ = build_model(name, "scratch")
    fit(model, sets[0], sets[1], replace(cfg, epochs=1), seed=0)  # warm-up: kernels, caches
    return fit(model, sets[0], sets[1], replace(cfg, epochs=epochs), seed=1).images_per_second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="*", default=["mobilenet_v1", "mobilenet_v2"])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads; 0: torch's default")
    ap.add_argument("--cpu-only", action="store_true", help="skip the GPU variants")
    args = ap.parse_args()
    runs = variants(args.cpu_only)
    gpu = torch.cuda.get_device_name(0) if any(d == "cuda" for d, _, _ in runs) else "none"
    print(
        f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} CPU threads, "
        f"GPU: {gpu}; {args.images} images of {args.side} px, batch {args.batch_size}, "
        f"{args.epochs} timed epochs",
        flush=True,
    )
    print(f"{'backbone':14s} {'variant':26s} {'img/s':>8s} {'vs cpu fp32':>11s}", flush=True)
    best: dict[str, tuple[float, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        frame = patches(Path(tmp), args.images, args.side)
        for name in args.backbones:
            spec = get_spec(name)
            sets = [
                ImageSet(
                    f, tmp, label_malignant, channels=3, mean=spec.mean, std=spec.std, desc=name
                )
                for f in (frame, frame.head(2))
            ]
            reference = None
            for device, precision, nhwc in runs:
                cfg = TrainConfig(
                    batch_size=args.batch_size,
                    patience=0,
                    threads=args.threads,
                    device=device,
                    mixed_precision=precision,
                    channels_last=nhwc,
                )
                rate = throughput(name, sets, cfg, args.epochs)
                reference = reference or rate
                ratio = rate / reference
                variant = label(device, precision, nhwc)
                if ratio > best.get(name, (0.0, ""))[0]:
                    best[name] = (ratio, variant)
                print(f"{name:14s} {variant:26s} {rate:8.1f} {ratio:10.2f}×", flush=True)
    worst = min(best, key=lambda n: best[n][0])
    print(
        f"lowest speed-up of the fastest variant over cpu fp32: {best[worst][0]:.2f}× "
        f"({worst}, {best[worst][1]})"
    )


if __name__ == "__main__":
    main()
