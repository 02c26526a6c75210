"""One backbone exported: :func:`export_backbone` writes the four files atomically, checks
every variant against PyTorch and times it; :func:`patch_sets` loads the patches it needs.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mammocad.deployed import CAM_FILE
from mammocad.evaluate import binary_metrics, model_file_mb
from mammocad.experiment import read_split
from mammocad.export.cam import write_cam
from mammocad.export.config import (
    FP32_VARIANTS,
    INT8_FILE,
    META_FILE,
    ONNX_FILE,
    TORCHSCRIPT_FILE,
    ExportConfig,
)
from mammocad.export.quantize import calibration_batches, quantize_onnx
from mammocad.export.runners import (
    compare,
    malignant_probability,
    onnx_runner,
    ort_session,
    time_runner,
    torch_runner,
    torch_threads,
)
from mammocad.export.writers import DeployModel, export_onnx, export_torchscript
from mammocad.io import atomic_dir, write_json
from mammocad.localize.maps import DEFAULT_HALO
from mammocad.models.backbones import get_spec
from mammocad.models.backbones.surgery import count_parameters
from mammocad.models.data import ImageSet, label_malignant

log = logging.getLogger(__name__)


def patch_sets(
    split_dir: Path, augmented_dir: Path, patches_dir: Path
) -> tuple[ImageSet, ImageSet]:
    """The grey [0, 1] calibration (augmented training) and test ROI patches of a run.

    Args:
        split_dir: the split stage's output (``val.csv``, ``test.csv``).
        augmented_dir: the augment stage's output (``train.csv`` and its images).
        patches_dir: the patches stage's output, which the test rows point into.
    """
    frames = read_split(split_dir, augmented_dir, "roi")
    calibration = ImageSet(
        frames["train"], augmented_dir, label_malignant, desc="load calibration"
    )
    test = ImageSet(frames["test"], patches_dir, label_malignant, desc="load test")
    return calibration, test


def export_backbone(
    model: nn.Module,
    checkpoint: dict[str, Any],
    calibration: ImageSet,
    test: ImageSet,
    threshold: float,
    cfg: ExportConfig,
    out_dir: Path,
    seed: int = 42,
    checkpoint_path: Path | None = None,
) -> dict[str, Any]:
    """Exports a fine-tuned backbone, checks every file against PyTorch and times it.

    Args:
        model: the trained backbone in eval mode (see ``load_trained_backbone``).
        checkpoint: its checkpoint dict (``backbone`` and ``config`` with the ``input``
            normalisation are read).
        calibration: training patches, grey in [0, 1] (``channels=1``, no mean/std).
        test: test patches, grey in [0, 1], with labels.
        threshold: the decision threshold chosen on validation by ``evaluate``.
        cfg: export settings.
        out_dir: directory that receives the four files, and for a backbone with a CAM
            head the class activation map graph of ``mammocad predict`` and its record
            (:func:`mammocad.export.cam.write_cam`); written atomically (a failed export
            leaves the previous directory as it was).
        seed: picks the calibration subset.
        checkpoint_path: the checkpoint file, for its size and for the CAM graph's record
            (its hash); without it no CAM graph is written.

    Returns:
        A JSON-ready record: files and sizes, quantization, per-variant checks and
        latencies, and the int8 speed-up over eager PyTorch; with a CAM graph, ``files.cam``
        and its checks ``checks.cam_onnx``.

    Raises:
        ValueError: if the sets are not grey [0, 1] patches of one shape.
        RuntimeError: if an export fails or an FP32 export disagrees with PyTorch by more
            than ``cfg.fp32_tolerance``.
    """
    for name, patches in (("calibration", calibration), ("test", test)):
        if patches.channels != 1 or patches._mean is not None:
            raise ValueError(f"{name} patches must be grey [0, 1] (channels=1, no mean/std)")
    norm = checkpoint["config"]["input"]
    deploy = DeployModel(model.eval(), norm["mean"], norm["std"]).eval()
    example = test.get_batch([0])[0]
    shape = tuple(example.shape[1:])
    labels = test.labels.numpy()
    backbone = checkpoint["backbone"]

    with atomic_dir(out_dir) as tmp, torch_threads(cfg.threads):
        log.info("%s: TorchScript and ONNX", backbone)
        export_torchscript(deploy, example, tmp / TORCHSCRIPT_FILE)
        export_onnx(deploy, example, tmp / ONNX_FILE, cfg.opset)
        calib = calibration_batches(calibration, cfg.calibration_images, seed)
        log.info(
            "%s: int8 (%s) on %d calibration patches",
            backbone,
            cfg.quantization,
            sum(len(b) for b in calib),
        )
        quant = quantize_onnx(
            tmp / ONNX_FILE,
            tmp / INT8_FILE,
            cfg.quantization,
            calib,
            cfg.calibration_method,
            cfg.per_channel,
            cfg.reduce_range,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            scripted = torch.jit.load(str(tmp / TORCHSCRIPT_FILE))
        runners = {
            "eager": torch_runner(deploy),
            "torchscript": torch_runner(scripted),
            "onnx": onnx_runner(ort_session(tmp / ONNX_FILE, cfg.threads)),
            "onnx_int8": onnx_runner(ort_session(tmp / INT8_FILE, cfg.threads)),
        }
        probs = {name: malignant_probability(run, test) for name, run in runners.items()}
        reference = probs["eager"]
        checks = {
            name: compare(reference, p, labels, threshold)
            for name, p in probs.items()
            if name != "eager"
        }
        for name in FP32_VARIANTS:
            if checks[name]["max_prob_diff"] > cfg.fp32_tolerance:
                raise RuntimeError(
                    f"{backbone}: {name} export differs from PyTorch by "
                    f"{checks[name]['max_prob_diff']:.3g} in probability "
                    f"(> export.fp32_tolerance {cfg.fp32_tolerance})"
                )
        eager = binary_metrics(labels, reference, threshold)
        one = example.numpy()
        latency = {}
        for name in ("eager", "onnx", "onnx_int8"):
            log.info("%s: timing %s", backbone, name)
            latency[name] = time_runner(runners[name], one, cfg.latency_repeats)
        sizes = {
            "onnx": model_file_mb(tmp / ONNX_FILE),
            "onnx_int8": model_file_mb(tmp / INT8_FILE),
            "torchscript": model_file_mb(tmp / TORCHSCRIPT_FILE),
        }
        if checkpoint_path is not None:
            sizes["checkpoint"] = model_file_mb(checkpoint_path)
        total, _ = count_parameters(model)
        record = {
            "backbone": backbone,
            "input": {
                "shape": [None, *shape],
                "dtype": "float32",
                "range": [0.0, 1.0],
                "layout": "grey ROI patches (B, 1, H, W); enhanced as in 'preprocessing'",
                "output": "probabilities (B, 2): benign, malignant",
            },
            "threshold": threshold,
            "opset": cfg.opset,
            "threads": cfg.threads,
            "params_total": total,
            "n_test": len(test),
            "quantization": quant,
            "files": {
                "onnx": ONNX_FILE,
                "onnx_int8": INT8_FILE,
                "torchscript": TORCHSCRIPT_FILE,
            },
            "file_mb": {k: round(v, 3) for k, v in sizes.items()},
            "eager": {
                "accuracy": eager["accuracy"],
                "roc_auc": eager["roc_auc"],
                # how far apart the model's own outputs lie: a narrow range lets small
                # int8 errors flip decisions without any large probability difference
                "prob_min": float(reference.min()),
                "prob_max": float(reference.max()),
            },
            "checks": checks,
            "latency": latency,
            "speedup_int8_vs_eager": _ratio(latency["eager"], latency["onnx_int8"]),
            "speedup_onnx_vs_eager": _ratio(latency["eager"], latency["onnx"]),
            "accuracy_cost_int8": _cost(eager["accuracy"], checks["onnx_int8"]["accuracy"]),
            "auc_cost_int8": _cost(eager["roc_auc"], checks["onnx_int8"]["roc_auc"]),
        }
        meta = {
            **{k: record[k] for k in ("backbone", "input", "threshold", "opset", "files")},
            "quantization": quant,
            "preprocessing": {
                k: checkpoint["config"].get(k)
                for k in ("enhance", "patches", "patch_px", "image_px")
            },
            "normalisation_in_graph": {"mean": norm["mean"], "std": norm["std"]},
            "checks": checks,
        }
        if checkpoint_path is not None and get_spec(backbone).head == "gap_linear":
            log.info("%s: class activation map graph for mammocad predict", backbone)
            checks["cam_onnx"] = write_cam(
                model,
                checkpoint,
                checkpoint_path,
                tmp,
                test,
                threshold,
                cfg.opset,
                cfg.fp32_tolerance,
                _halo(checkpoint_path),
            )
            record["files"]["cam"] = CAM_FILE  # the same dict as meta's
        write_json(tmp / META_FILE, meta)
    return record


def _halo(checkpoint_path: Path) -> int:
    """Rescaled rows of context a stripe of a striped CAM pass needs, as ``mammocad
    predict`` computes it on PyTorch (:func:`mammocad.inference.cam_halo`)."""
    from mammocad.checkpoint import load_trained_backbone
    from mammocad.inference import build_architecture, cam_halo

    return cam_halo(load_trained_backbone(checkpoint_path, build_architecture)[0]) or DEFAULT_HALO


def _ratio(slow: dict[str, Any], fast: dict[str, Any]) -> float | None:
    if not fast["median_ms"]:
        return None
    return round(slow["median_ms"] / fast["median_ms"], 3)


def _cost(before: float | None, after: float | None) -> float | None:
    """How much a metric dropped (positive: the variant is worse)."""
    if before is None or after is None or not math.isfinite(before) or not math.isfinite(after):
        return None
    return round(before - after, 6)
