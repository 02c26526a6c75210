"""Enhance stage cost against bare OpenCV, and its speed-up from 1 to 2 worker processes.

Prints, per image of about 3000 × 4600 pixels (16-bit, the size of a CBIS-DDSM full
mammogram):

* the pipeline's filter chain (``apply_chain``, as the stage calls it) over the bare
  OpenCV calls that compute the same result (``cv2.bitwise_and`` to ``bins`` levels,
  ``cv2.createCLAHE(...).apply``, ``cv2.medianBlur``) on the same in-memory image
  (target: at most 1.15);
* the stage's whole per-image cost (PNG decode, filters, PNG encode) over the bare calls,
  for information;
* the speed-up of ``enhance_dataset`` from 1 to 2 worker processes (printed last).

Usage: ``python benchmarks/bench_enhance.py [--images 8] [--height 4600] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammocad.enhance import EnhanceConfig, _enhance_one, apply_chain, enhance_dataset
from mammocad.io import write_png


def mammogram_like(height: int, seed: int) -> np.ndarray:
    """A 16-bit image with smooth structure and noise (the filters' cost is data-driven)."""
    rng = np.random.default_rng(seed)
    width = int(height * 0.64)
    low = rng.normal(0, 1, (height // 32, width // 32)).astype(np.float32)
    smooth = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    img = 20000 + 6000 * smooth + rng.normal(0, 300, (height, width)).astype(np.float32)
    return np.clip(img, 0, 65535).astype(np.uint16)


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--height", type=int, default=4600)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core per image, as in the stage's worker processes

    cfg = EnhanceConfig()
    image = mammogram_like(args.height, 0)

    step = 65536 // cfg.clahe.bins
    grid = (cfg.clahe.tile_grid, cfg.clahe.tile_grid)

    def bare() -> np.ndarray:
        # the same work in raw OpenCV calls: quantise to `bins` levels, CLAHE, median
        op = cv2.createCLAHE(clipLimit=cfg.clahe.clip_limit * step, tileGridSize=grid)
        return cv2.medianBlur(op.apply(cv2.bitwise_and(image, 65536 - step)), cfg.median.kernel)

    assert np.array_equal(bare(), apply_chain(image, cfg)), "chain differs from bare OpenCV"
    t_bare = best_of(bare, args.repeats)
    t_chain = best_of(lambda: apply_chain(image, cfg), args.repeats)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for i in range(args.images):
            rel = f"full/img{i}.png"
            write_png(tmp / "converted" / rel, mammogram_like(args.height, i))
            rows.append(
                {
                    "image_id": f"img{i}",
                    "kind": "full",
                    "image_path": rel,
                    "mask_path": "",
                    "height": args.height,
                    "width": image.shape[1],
                }
            )
        pd.DataFrame(rows).to_csv(tmp / "converted/manifest.csv", index=False)
        src, dst = tmp / "converted/full/img0.png", tmp / "one.png"
        t_stage_img = best_of(lambda: _enhance_one((src, dst, cfg, False)), args.repeats)
        timings = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            enhance_dataset(tmp / "converted", tmp / f"enh{workers}", cfg, workers=workers)
            timings[workers] = time.perf_counter() - t0

    h, w = image.shape
    print(f"image {h}x{w} uint16, chain {' -> '.join(cfg.chain)}, best of {args.repeats}")
    print(f"bare OpenCV CLAHE+median      {t_bare * 1e3:8.1f} ms/image")
    print(f"pipeline apply_chain          {t_chain * 1e3:8.1f} ms/image")
    print(
        f"stage per image incl. PNG I/O {t_stage_img * 1e3:8.1f} ms/image "
        f"({t_stage_img / t_bare:.2f}x bare)"
    )
    print(
        f"enhance_dataset {args.images} images: 1 worker {timings[1]:.2f} s, "
        f"2 workers {timings[2]:.2f} s"
    )
    print(f"speed-up 1 -> 2 workers: {timings[1] / timings[2]:.2f}x")
    print(f"enhance chain cost over bare OpenCV: {t_chain / t_bare:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
