"""The ``export`` params section (:class:`ExportConfig`) and the names of the files an
export writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
        reduce_range: int8 weights in 7 bits. x86 CPUs without VNNI (AVX2, AVX-512 before
            VNNI) multiply uint8 activations by int8 weights with an instruction whose sums
            of pairs saturate at 16 bits; 7-bit weights keep them in range, at a cost of half
            the weight resolution. ONNX Runtime's quantization guide advises it there; CPUs
            with VNNI (and ARM) run either graph without saturating.
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
    reduce_range: bool = True
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
