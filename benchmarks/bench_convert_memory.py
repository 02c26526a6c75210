"""Peak memory of ``convert`` on 20 and on 200 full-size synthetic mammograms.

``convert`` streams image by image, so its peak memory (the parent plus its worker
processes, sampled every 20 ms) must not grow with the number of images. Generates two
synthetic TCIA-format datasets of 4600-pixel-high full mammograms (5 and 50 patients ×
4 views, with their ROI crops and masks), converts each in a fresh process, and prints the
peak resident memory of each run and, last, their ratio (200 over 20; flat is 1.0).

Usage: ``python benchmarks/bench_convert_memory.py [--height 4600] [--workers 2] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from mammocad.sources.synthetic import SyntheticConfig, generate_synthetic

CHILD = """
import sys
from pathlib import Path
from mammocad.convert import convert_dataset
r = convert_dataset(Path(sys.argv[1]), Path(sys.argv[2]), workers=int(sys.argv[3]),
                    max_skipped_fraction=1.0)
print(r.metrics["full_images_written"])
"""


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def peak_convert(raw: Path, out: Path, workers: int) -> tuple[int, float, str]:
    """Runs convert in a child process; returns (peak tree RSS, seconds, stdout)."""
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(raw), str(out), str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(proc))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    stdout = child.stdout.read() if child.stdout else ""
    if child.returncode != 0:
        raise SystemExit(f"convert failed with exit code {child.returncode}")
    return peak, time.perf_counter() - t0, stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=4600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="keep the datasets under DIR")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="mammocad-bench-"))
    results = {}
    try:
        for n_images in (20, 200):
            raw = base / f"raw{n_images}"
            if not (raw / "csv").is_dir():
                cfg = SyntheticConfig(
                    n_patients=n_images // 4, image_height=args.height, normal_fraction=0.5
                )
                t0 = time.perf_counter()
                generate_synthetic(raw, cfg, seed=0, workers=args.workers)
                print(
                    f"generated {n_images} full images in {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
            out = base / f"converted{n_images}"
            shutil.rmtree(out, ignore_errors=True)
            peak, secs, written = peak_convert(raw, out, args.workers)
            results[n_images] = peak
            print(
                f"convert {n_images:4d} images ({written} full written): peak RSS "
                f"{peak / 2**20:7.0f} MiB, {secs:6.1f} s, {n_images / secs:.2f} img/s",
                flush=True,
            )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"peak memory 200 images / 20 images: {results[200] / results[20]:.2f}")


if __name__ == "__main__":
    main()
