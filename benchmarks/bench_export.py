"""ONNX Runtime int8 against eager PyTorch FP32: batch-1 CPU speed-up and accuracy cost.

For each backbone, exports the pipeline's trained checkpoint (``models/<backbone>.pt``)
with :func:`mammocad.export.export_backbone` into a temporary folder, exactly as the
``export`` stage does, and prints the median batch-1 latency of eager PyTorch, ONNX
Runtime FP32 and ONNX Runtime int8 on the same number of threads (default 2), the int8
speed-up over eager FP32 (target at least 2 for the MobileNets) and the test accuracy and
AUC lost by int8. The last line is the lowest MobileNet speed-up.

Needs a pipeline that has run up to ``evaluate`` (``dvc repro``), for the checkpoints,
the calibration and test patches and the evaluation threshold.

Usage: ``python benchmarks/bench_export.py [--backbones mobilenet_v1 ...] [--repeats 50]
[--threads 2] [--root .]``
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from mammocad.checkpoint import load_trained_backbone
from mammocad.export import ExportConfig, export_backbone, patch_sets
from mammocad.models.backbones import BACKBONES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("."))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data = args.root / "data"
    calibration, test = patch_sets(data / "split", data / "augmented", data / "patches")
    cfg = ExportConfig(threads=args.threads, latency_repeats=args.repeats)
    print(
        f"{'backbone':14s} {'eager ms':>9s} {'ORT32 ms':>9s} {'int8 ms':>9s} {'speed-up':>9s} "
        f"{'acc':>6s} {'acc int8':>8s} {'auc':>6s} {'auc int8':>8s} {'agree':>6s} quant"
    )
    mobile = []
    for name in args.backbones:
        ckpt_path = args.root / f"models/{name}.pt"
        if not ckpt_path.is_file():
            raise SystemExit(f"{ckpt_path} not found: run `dvc repro finetune@{name}` first")
        model, ckpt = load_trained_backbone(ckpt_path)
        threshold = json.loads((args.root / f"metrics/eval/{name}.json").read_text())["threshold"]
        with tempfile.TemporaryDirectory() as tmp:
            r = export_backbone(model, ckpt, calibration, test, threshold, cfg, Path(tmp) / name)
        lat, int8 = r["latency"], r["checks"]["onnx_int8"]
        print(
            f"{name:14s} {lat['eager']['median_ms']:9.2f} {lat['onnx']['median_ms']:9.2f} "
            f"{lat['onnx_int8']['median_ms']:9.2f} {r['speedup_int8_vs_eager']:8.2f}x "
            f"{r['eager']['accuracy']:6.3f} {int8['accuracy']:8.3f} "
            f"{r['eager']['roc_auc'] or float('nan'):6.3f} {int8['roc_auc'] or float('nan'):8.3f} "
            f"{int8['decision_agreement']:6.3f} {r['quantization']['method']}",
            flush=True,
        )
        if name.startswith("mobilenet"):
            mobile.append(r["speedup_int8_vs_eager"])
    if mobile:
        print(f"lowest MobileNet int8 speed-up over eager FP32: {min(mobile):.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
