"""Deployment formats of a fine-tuned backbone: ONNX, TorchScript and int8 (paper §4.3).

The paper prefers MobileNet because it is small and fast enough for "mobile and embedded
vision applications" (§4.3). This module makes that claim measurable. Each trained
backbone is written as

* ``model.onnx``: FP32 ONNX for ONNX Runtime and mobile runtimes;
* ``model.torchscript.pt``: FP32 TorchScript for PyTorch's C++ and mobile runtimes;
* ``model.int8.onnx``: int8 ONNX, statically quantized (QDQ, per-channel weights) with
  activation ranges calibrated on training patches, or dynamically quantized (weights
  only) where static quantization fails or is not asked for;
* ``model.json``: what a deployment needs besides the weights: input shape, threshold,
  preprocessing and how each file was checked.

Every exported graph takes what the pipeline's patches hold, grey ROI patches in [0, 1]
of shape ``(B, 1, H, W)``, and returns class probabilities ``(B, 2)`` (benign,
malignant): channel replication, ImageNet normalisation and softmax are inside the graph,
so no deployment can get them wrong. Each file is run on the test patches and compared
with the PyTorch model: the largest probability difference, the share of identical
decisions at the evaluation threshold, and the accuracy and AUC of the variant.
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mammocad.evaluate import binary_metrics, model_file_mb
from mammocad.experiment import read_split
from mammocad.io import atomic_dir, write_json
from mammocad.models.backbones import count_parameters
from mammocad.models.data import ImageSet, batches, label_malignant

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
META_FILE = "model.json"

#: Variants whose outputs must match PyTorch within ``fp32_tolerance``.
FP32_VARIANTS = ("torchscript", "onnx")


@dataclass(frozen=True)
class ExportConfig:
    """The ``export`` params section.

    Attributes:
        backbones: the ``finetune.backbones`` entries exported (one ``export@<entry>``
            stage each); variants trained only for comparison need not be.
        opset: ONNX opset of the exported graphs.
        quantization: ``static`` (activation ranges calibrated on training patches, the
            fastest int8 on CPUs), ``dynamic`` (weights only, activations quantized at
            run time; needs no data) or ``auto`` (static, falling back to dynamic with the
            reason recorded if static quantization fails for a backbone).
        calibration_images: training patches the static ranges are calibrated on.
        calibration_method: ``minmax``, ``entropy`` or ``percentile`` (ONNX Runtime).
        per_channel: quantize weights per output channel (more accurate than per tensor).
        threads: CPU threads for the latency of every variant (eager PyTorch and ONNX
            Runtime alike), as on a small device.
        latency_repeats: timed batch-1 runs per variant (the median is reported).
        fp32_tolerance: largest probability difference allowed between PyTorch and an FP32
            export; a larger one fails the export, as the graph does not compute the model.
    """

    backbones: tuple[str, ...] = ()
    opset: int = 17
    quantization: Literal["auto", "static", "dynamic"] = "auto"
    calibration_images: int = 64
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    threads: int = 2
    latency_repeats: int = 30
    fp32_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        """Rejects values that cannot describe an export, naming the field."""
        checks = {
            "opset": 13 <= self.opset <= 23,
            "quantization": self.quantization in ("auto", "static", "dynamic"),
            "calibration_images": self.calibration_images >= 1,
            "calibration_method": self.calibration_method in ("minmax", "entropy", "percentile"),
            "threads": self.threads >= 1,
            "latency_repeats": self.latency_repeats >= 1,
            "fp32_tolerance": self.fp32_tolerance > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"invalid export config {name}={getattr(self, name)!r}")


class DeployModel(nn.Module):
    """A classifier with its input preparation and softmax, for export.

    Args:
        model: the fine-tuned backbone, mapping normalised ``(B, 3, H, W)`` images to
            logits.
        mean: per-channel mean of the backbone's normalisation.
        std: per-channel standard deviation.

    The forward pass maps grey patches ``(B, 1, H, W)`` in [0, 1] to probabilities
    ``(B, num_classes)``, exactly as :class:`~mammocad.models.data.ImageSet` followed by
    the model and a softmax would.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.channels = channels

    def forward(self, grey: torch.Tensor) -> torch.Tensor:
        """Probabilities of every class for grey ``(B, 1, H, W)`` patches in [0, 1]."""
        x = grey.expand(-1, self.channels, -1, -1) if self.channels != 1 else grey
        return torch.softmax(self.model((x - self.mean) / self.std), dim=1)


# ----------------------------------------------------------------------------- writers


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Traces ``model`` on ``example`` and saves it as TorchScript.

    Tracing (not scripting) records the operations the eval-mode network runs; the
    backbones have no data-dependent control flow, and the output check against PyTorch
    proves the trace right.
    """
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        traced.save(str(path))


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """Writes ``model`` as an ONNX graph with a dynamic batch axis, then validates it.

    Uses the TorchScript-based exporter, which writes a single self-contained file with
    batch norms folded into the convolutions, as mobile runtimes want.

    Raises:
        RuntimeError: if the exporter fails or the graph does not pass ``onnx.checker``,
            naming the file.
    """
    import onnx

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (example,),
                str(path),
                dynamo=False,
                input_names=["patch"],
                output_names=["probabilities"],
                dynamic_axes={"patch": {0: "batch"}, "probabilities": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # any exporter failure is reported as one error
        raise RuntimeError(f"{path}: ONNX export failed: {type(exc).__name__}: {exc}") from exc


class _Calibration:
    """ONNX Runtime's calibration reader over batches of training patches."""

    def __init__(self, batches_: Sequence[np.ndarray]) -> None:
        self._batches = list(batches_)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._batches):
            return None
        self._next += 1
        return {"patch": self._batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter({"patch": b} for b in self._batches)


def quantize_onnx(
    fp32_path: Path,
    int8_path: Path,
    method: Literal["auto", "static", "dynamic"],
    calibration: Sequence[np.ndarray] | None,
    calibration_method: str = "minmax",
    per_channel: bool = True,
) -> dict[str, Any]:
    """Writes an int8 version of an FP32 ONNX graph.

    The graph is first pre-processed (shape inference and graph optimisation), as ONNX
    Runtime advises before quantization. Static quantization inserts QDQ pairs with
    per-channel int8 weights and uint8 activations whose ranges come from the calibration
    batches; dynamic quantization stores int8 weights and quantizes activations per
    batch at run time.

    Args:
        fp32_path: the FP32 graph.
        int8_path: where the int8 graph goes.
        method: ``static``, ``dynamic`` or ``auto`` (static, else dynamic).
        calibration: ``(B, 1, H, W)`` float32 batches of training patches; required for
            ``static``. ``auto`` without them quantizes dynamically.
        calibration_method: ``minmax``, ``entropy`` or ``percentile``.
        per_channel: per-channel weight scales.

    Returns:
        ``{"method", "fallback_reason", "calibration_images", "calibration_method",
        "per_channel"}``: what was actually done.

    Raises:
        ValueError: for ``static`` without calibration data.
        RuntimeError: if quantization fails (for ``auto``: if dynamic fails too).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method == "static" and not calibration:
        raise ValueError("static quantization needs calibration images")
    info: dict[str, Any] = {
        "method": None,
        "fallback_reason": None,
        "calibration_images": 0,
        "calibration_method": None,
        "per_channel": per_channel,
    }
    with tempfile.TemporaryDirectory(prefix="mammocad-quant-") as tmp, _quiet_quantizer():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        # The softmax stays in float: a uint8 probability has a resolution of 1/255,
        # coarser than the margins by which patches clear a decision threshold.
        keep_float = _nodes_of_type(prepared, "Softmax")
        if method in ("static", "auto") and calibration:
            try:
                quantize_static(
                    str(prepared),
                    str(int8_path),
                    _Calibration(calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=_CALIBRATION[calibration_method](CalibrationMethod),
                    nodes_to_exclude=keep_float,
                    extra_options={"CalibTensorRangeSymmetric": False},
                )
                info.update(
                    method="static",
                    calibration_images=int(sum(len(b) for b in calibration)),
                    calibration_method=calibration_method,
                )
                return info
            except Exception as exc:  # auto falls back, static re-raises
                if method == "static":
                    raise RuntimeError(
                        f"{fp32_path}: static quantization failed: {type(exc).__name__}: {exc}"
                    ) from exc
                info["fallback_reason"] = f"static failed: {type(exc).__name__}: {exc}"
                log.warning("%s: %s; quantizing dynamically", fp32_path, info["fallback_reason"])
        elif method == "auto":
            info["fallback_reason"] = "no calibration images"
        try:
            quantize_dynamic(
                str(prepared), str(int8_path), per_channel=per_channel, weight_type=QuantType.QInt8
            )
        except Exception as exc:  # reported with the file's name
            raise RuntimeError(
                f"{fp32_path}: dynamic quantization failed: {type(exc).__name__}: {exc}"
            ) from exc
        info["method"] = "dynamic"
        return info


def _nodes_of_type(path: Path, op_type: str) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type == op_type]


_CALIBRATION: dict[str, Callable[[Any], Any]] = {
    "minmax": lambda m: m.MinMax,
    "entropy": lambda m: m.Entropy,
    "percentile": lambda m: m.Percentile,
}


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silences ONNX Runtime's per-node notices, which go to the root logger."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)


# ----------------------------------------------------------------------------- runners


def ort_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and full optimisation."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(model: nn.Module) -> Runner:
    """Runs an eval-mode PyTorch (or TorchScript) module on a float32 batch."""
    model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def onnx_runner(session: Any) -> Runner:
    """Runs an ONNX Runtime session on a float32 batch."""
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def malignant_probability(run: Runner, patches: ImageSet, batch_size: int = 32) -> np.ndarray:
    """Class-1 probability of every patch of a grey [0, 1] set, in order."""
    out = [run(x.numpy())[:, 1] for x, _ in batches(patches, batch_size)]
    return np.concatenate(out).astype(np.float64)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's intra-op thread count for the duration of the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_runner(run: Runner, example: np.ndarray, repeats: int, warmup: int = 3) -> dict:
    """Batch-1 latency of a runner: median, 90th percentile and mean in milliseconds."""
    for _ in range(warmup):
        run(example)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": statistics.fmean(times),
        "repeats": repeats,
    }


def compare(
    reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, threshold: float
) -> dict[str, Any]:
    """How a variant's malignancy probabilities agree with PyTorch's on the same patches.

    Returns:
        ``max_prob_diff`` and ``mean_prob_diff`` (absolute), ``decision_agreement`` (share
        of patches on the same side of ``threshold``), and the variant's ``accuracy`` and
        ``roc_auc`` at that threshold.
    """
    diff = np.abs(probs - reference)
    metrics = binary_metrics(labels, probs, threshold)
    return {
        "max_prob_diff": float(diff.max()),
        "mean_prob_diff": float(diff.mean()),
        "decision_agreement": float(np.mean((probs >= threshold) == (reference >= threshold))),
        "accuracy": metrics["accuracy"],
        "roc_auc": metrics["roc_auc"],
    }


def calibration_batches(
    patches: ImageSet, n: int, seed: int, batch_size: int = 16
) -> list[np.ndarray]:
    """A seeded random subset of ``n`` training patches as float32 batches."""
    order = np.random.default_rng(seed).permutation(len(patches))[: min(n, len(patches))]
    order = np.sort(order)
    return [
        patches.get_batch(torch.as_tensor(order[i : i + batch_size]))[0].numpy()
        for i in range(0, len(order), batch_size)
    ]


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


# ------------------------------------------------------------------------------ export


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
        out_dir: directory that receives the four files; written atomically (a failed
            export leaves the previous directory as it was).
        seed: picks the calibration subset.
        checkpoint_path: the checkpoint file, for its size.

    Returns:
        A JSON-ready record: files and sizes, quantization, per-variant checks and
        latencies, and the int8 speed-up over eager PyTorch.

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
                k: checkpoint["config"].get(k) for k in ("enhance", "patches", "patch_px")
            },
            "normalisation_in_graph": {"mean": norm["mean"], "std": norm["std"]},
            "checks": checks,
        }
        write_json(tmp / META_FILE, meta)
    return record


def _ratio(slow: dict[str, Any], fast: dict[str, Any]) -> float | None:
    if not fast["median_ms"]:
        return None
    return round(slow["median_ms"] / fast["median_ms"], 3)


def _cost(before: float | None, after: float | None) -> float | None:
    """How much a metric dropped (positive: the variant is worse)."""
    if before is None or after is None or not math.isfinite(before) or not math.isfinite(after):
        return None
    return round(before - after, 6)
