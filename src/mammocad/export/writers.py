"""The FP32 exports: :class:`DeployModel` (input preparation and softmax inside the graph)
written as TorchScript and as ONNX.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn


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


def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Traces ``model`` on ``example`` and saves it as TorchScript, the same in any checkout.

    Tracing (not scripting) records the operations the eval-mode network runs; the
    backbones have no data-dependent control flow, and the output check against PyTorch
    proves the trace right. The file is then written without its debug records (see
    :func:`_without_debug_records`).
    """
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(model.eval(), example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    path.write_bytes(_without_debug_records(buffer.getvalue()))


def _without_debug_records(archive: bytes) -> bytes:
    """A TorchScript archive without the records that depend on where the code lives.

    ``torch.jit.save`` writes, beside each code file, a ``.debug_pkl`` of source ranges
    that name the absolute path of every Python file the trace went through (this
    checkout's ``src/``, the environment's site-packages), and a ``serialization_id``
    hashed from all records. The same model exported from two checkouts then differs, and
    so does its hash in ``dvc.lock``. ``torch.jit.load`` needs neither record: without
    them an error inside the model names no Python source line, and the rest of the
    archive is copied unchanged, in order.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(archive)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            name = info.filename
            if name.endswith(".debug_pkl") or name.endswith("/.data/serialization_id"):
                continue
            dst.writestr(info, src.read(name), compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    names: tuple[str, str] = ("patch", "probabilities"),
    axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """Writes ``model`` as an ONNX graph with a dynamic batch axis, then validates it.

    Uses the TorchScript-based exporter, which writes a single self-contained file with
    batch norms folded into the convolutions, as mobile runtimes want.

    Args:
        model: the module to export, in eval mode.
        example: an input batch it is traced on.
        path: the file written.
        opset: ONNX opset.
        names: the graph's input and output names.
        axes: the dynamic axes of each name (``torch.onnx.export``'s ``dynamic_axes``);
            default: the batch axis of both.

    Raises:
        RuntimeError: if the exporter fails or the graph does not pass ``onnx.checker``,
            naming the file.
    """
    import onnx

    source, target = names
    if axes is None:
        axes = {source: {0: "batch"}, target: {0: "batch"}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                (example,),
                str(path),
                dynamo=False,
                input_names=[source],
                output_names=[target],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # any exporter failure is reported as one error
        raise RuntimeError(f"{path}: ONNX export failed: {type(exc).__name__}: {exc}") from exc
