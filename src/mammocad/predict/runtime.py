"""The trained networks on ONNX Runtime: ``mammocad predict`` without PyTorch.

Importing PyTorch takes 2–3 s on a small machine, most of the command's time on one image.
The ``export`` stages therefore write, beside each fine-tuned MobileNet's checkpoint, a
graph of its class activation maps (``models/export/<backbone>/cam.onnx``), and
``export_shallow`` the shallow CNN's (``models/export/shallow_cnn/model.onnx``). Each has a
JSON record naming the SHA-256 of the checkpoint it was made from and that checkpoint's
settings, so the command can use the graphs only while they stand for the checkpoints next
to them (:func:`onnx_files`), and otherwise runs PyTorch and says why.

The CAM graph maps grey images ``(B, 1, H, W)`` in [0, 1] to class activation maps
``(B, classes, H / 32, W / 32)``: the input normalisation, the network up to its CAM target
layer and the classifier applied at every feature cell (a 1 × 1 convolution with the
linear layer's weights). It serves both uses of the patch network:

* the heatmap: the maps of a whole rescaled mammogram, in stripes as
  :func:`mammocad.localize.maps.stripes` cuts them, turned into probabilities by
  :func:`mammocad.localize.maps.cam_map`;
* a patch's probability: global average pooling and the linear layer commute, so the
  spatial mean of a patch's maps is the network's logits.

The shallow CNN's graph maps grey images ``(B, 1, H, W)`` in [0, 1], of any size (the
network ends in global pooling), to the probabilities of its two classes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mammocad.deployed import (
    CAM_FILE,
    CAM_META,
    FORMAT,
    SHALLOW_FILE,
    SHALLOW_META,
    export_folder,
    file_sha256,
)
from mammocad.localize.maps import (
    Heatmap,
    cam_map,
    check_stride,
    full_resolution,
    stripes,
    unit_range,
    working_shape,
)
from mammocad.patches import resize

log = logging.getLogger("mammocad.predict")

#: Batch of patches per pass when scoring regions.
PATCH_BATCH = 32


class Unavailable(Exception):
    """The ONNX graphs cannot stand for the checkpoints; ``reason`` says why, in one line.

    ``absent`` is true where no graph was exported (nothing is wrong: PyTorch runs), false
    where one is there but stale or unreadable (worth a warning).
    """

    def __init__(self, reason: str, absent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.absent = absent


def onnx_files(checkpoint: Path, graph_name: str, meta_name: str) -> tuple[Path, dict[str, Any]]:
    """A checkpoint's ONNX graph and record, checked to stand for that checkpoint.

    Raises:
        Unavailable: the graph or record is missing or unreadable, of another format, or
            made from other weights than the checkpoint's (the reason names the file).
    """
    folder = export_folder(checkpoint)
    graph, meta_path = folder / graph_name, folder / meta_name
    for path in (graph, meta_path):
        if not path.is_file():
            raise Unavailable(f"{path} not found ({_absent_because(folder)})", absent=True)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise Unavailable(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise Unavailable(f"{meta_path}: record format {found!r}, expected {FORMAT}")
    ckpt = meta.get("checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config", {}), dict):
        raise Unavailable(f"{meta_path}: no 'checkpoint' record")
    if ckpt.get("sha256") != file_sha256(checkpoint):
        raise Unavailable(
            f"{graph} was made from other weights than {checkpoint} (rerun `dvc repro` to "
            "export the checkpoint again)"
        )
    return graph, meta


def _absent_because(folder: Path) -> str:
    if (folder / "model.onnx").is_file():  # exported, without a graph for predict
        return "the backbone's head is not global average pooling + one linear layer"
    return "`dvc repro` writes it for the entries of export.backbones with a CAM head"


def _field(meta: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Unavailable(f"{path}: {key!r} missing or not {kind.__name__}")
    return value


def checkpoint_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``config`` and ``metrics`` as a graph's record keeps them (the form
    :func:`mammocad.cli.common._read_config` reads from the checkpoint itself)."""
    ckpt = meta.get("checkpoint") or {}
    return {"config": ckpt.get("config") or {}, "metrics": ckpt.get("metrics") or {}}


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a corrupt or foreign graph
        raise Unavailable(f"{path}: not a loadable ONNX graph ({type(exc).__name__})") from None


def grey_input(image: np.ndarray) -> np.ndarray:
    """A ``uint8``/``uint16`` grey image as a float32 ``(1, 1, H, W)`` array in [0, 1]."""
    return unit_range(image)[None, None]


class OnnxNetworks:
    """The patch network (CAM graph) and shallow CNN of two checkpoints, on ONNX Runtime.

    Args:
        checkpoint_backbone: the fine-tuned patch network's checkpoint.
        checkpoint_shallow: the shallow CNN's checkpoint, or ``None``.

    Raises:
        Unavailable: a graph is missing, unreadable or made from other weights.
    """

    engine = "onnx"

    def __init__(self, checkpoint_backbone: Path, checkpoint_shallow: Path | None) -> None:
        graph, meta = onnx_files(Path(checkpoint_backbone), CAM_FILE, CAM_META)
        record = graph.with_name(CAM_META)
        self.backbone = _field(meta, "backbone", str, record)
        self.method = "cam"
        self.halo = _field(meta, "halo", int, record)
        self.settings = checkpoint_settings(meta)
        self.shallow_settings: dict[str, Any] | None = None
        self.shallow_info: dict[str, Any] = {}
        shallow = None
        if checkpoint_shallow is not None:
            shallow_graph, shallow_meta = onnx_files(
                Path(checkpoint_shallow), SHALLOW_FILE, SHALLOW_META
            )
            self.shallow_settings = checkpoint_settings(shallow_meta)
            positive = (self.shallow_settings["config"].get("shallow") or {}).get("positive")
            self.shallow_info = {"positive": positive, "checkpoint": str(checkpoint_shallow)}
            shallow = _session(shallow_graph)
        self._cam = _session(graph)
        self._cam_input = self._cam.get_inputs()[0].name
        self._shallow = shallow

    @property
    def has_shallow(self) -> bool:
        return self._shallow is not None

    def _maps(self, grey: np.ndarray) -> np.ndarray:
        return self._cam.run(None, {self._cam_input: grey})[0]

    def shallow_probability(self, small: np.ndarray) -> float:
        """The shallow CNN's class-1 probability for a down-sized enhanced image."""
        if self._shallow is None:
            raise RuntimeError("no shallow CNN checkpoint was given")
        name = self._shallow.get_inputs()[0].name
        return float(self._shallow.run(None, {name: grey_input(small)})[0][0, 1])

    def patch_probabilities(self, patches: Sequence[np.ndarray]) -> list[float]:
        """The patch network's class-1 probability for each patch (the training size)."""
        out: list[float] = []
        for start in range(0, len(patches), PATCH_BATCH):
            batch = np.concatenate([grey_input(p) for p in patches[start : start + PATCH_BATCH]])
            logits = self._maps(batch).mean(axis=(2, 3), dtype=np.float64)
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
            out.extend(float(p) for p in probs)
        return out

    def heatmap(
        self,
        image: np.ndarray,
        scale: float,
        breast: np.ndarray,
        max_pixels: int,
        tile_pixels: int | None,
    ) -> Heatmap:
        """The CAM heatmap of an enhanced image rescaled by ``scale``, as
        :func:`mammocad.localize.compute_heatmap` computes it, in stripes of at most
        ``tile_pixels`` rescaled pixels plus the halo (``None``: one pass)."""
        h, w = image.shape
        wh, ww = working_shape((h, w), scale, max_pixels)
        work = resize(image, wh, ww)
        if tile_pixels and wh * ww > tile_pixels:
            parts = []
            for lo, hi, first, last in stripes(wh, ww, tile_pixels, self.halo):
                maps = self._maps(grey_input(work[lo:hi]))[0]
                check_stride(hi - lo, maps.shape[1])
                parts.append(maps[:, first:last])
            cams = np.concatenate(parts, axis=1)
        else:
            cams = self._maps(grey_input(work))[0]
        del work
        return full_resolution(cam_map(cams), (h, w), breast, (wh, ww))
