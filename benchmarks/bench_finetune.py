"""Fine-tuning throughput against the same model fed random tensors, and batch-1 latency.

For each backbone, trains one epoch with the pipeline's loop (:func:`mammocad.train.fit`
on an :class:`~mammocad.models.data.ImageSet` of 16-bit PNG patches read from disk) and
the same number of optimisation steps of a bare loop over random in-memory tensors (same
model, optimiser, batch size, frozen layers). Prints images per second of each, their
ratio (target at least 0.9: data handling must not be the bottleneck) and the batch-1 CPU
inference latency. The last line is the lowest ratio over the backbones.

Usage: ``python benchmarks/bench_finetune.py [--backbones mobilenet_v1 ...] [--images 128]
[--batch-size 64]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mammocad.evaluate import latency_ms
from mammocad.io import write_png
from mammocad.models.backbones import BACKBONES, build_model, get_spec
from mammocad.models.data import ImageSet, label_malignant
from mammocad.train import TrainConfig, fit


def patches(root: Path, n: int, side: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        write_png(root / f"p{i}.png", rng.integers(0, 65535, (side, side), dtype=np.uint16))
        rows.append(
            {
                "image_id": f"p{i}",
                "patient_id": f"P{i}",
                "image_path": f"p{i}.png",
                "pathology": "MALIGNANT" if i % 2 else "BENIGN",
            }
        )
    return pd.DataFrame(rows)


def bare_loop(model, steps: int, batch: int, side: int) -> float:
    """Seconds for ``steps`` optimisation steps on random tensors already in memory."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, side, side)
    y = torch.randint(0, 2, (batch,))
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--side", type=int, default=224)
    args = ap.parse_args()
    if args.images % args.batch_size:
        raise SystemExit("--images must be a multiple of --batch-size")
    steps = args.images // args.batch_size
    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        frame = patches(Path(tmp), args.images, args.side)
        val = frame.head(2)
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, patience=0)
        print(
            f"{'backbone':14s} {'loop img/s':>10s} {'bare img/s':>10s} {'ratio':>6s} "
            f"{'batch-1 ms':>10s}",
            flush=True,
        )
        for name in args.backbones:
            spec = get_spec(name)
            sets = [
                ImageSet(
                    f, tmp, label_malignant, channels=3, mean=spec.mean, std=spec.std, desc=name
                )
                for f in (frame, val)
            ]
            torch.manual_seed(0)
            model, _ = build_model(name, "scratch")
            bare_loop(model, 1, args.batch_size, args.side)  # warm-up
            torch.manual_seed(0)
            model, _ = build_model(name, "scratch")
            t0 = time.perf_counter()
            fit(model, sets[0], sets[1], cfg, seed=0)
            t_loop = time.perf_counter() - t0
            torch.manual_seed(0)
            model, _ = build_model(name, "scratch")
            t_bare = bare_loop(model, steps, args.batch_size, args.side)
            lat = latency_ms(model, (1, 3, args.side, args.side), repeats=10)
            ratios[name] = t_bare / t_loop
            print(
                f"{name:14s} {args.images / t_loop:10.1f} {args.images / t_bare:10.1f} "
                f"{ratios[name]:6.3f} {lat['median_ms']:10.1f}",
                flush=True,
            )
    worst = min(ratios, key=ratios.get)
    print(
        f"lowest training throughput ratio (loop / random tensors): {ratios[worst]:.3f} "
        f"({worst}; target >= 0.9)"
    )


if __name__ == "__main__":
    main()
