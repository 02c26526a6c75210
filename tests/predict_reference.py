"""A fixed prediction problem whose answers are recorded in ``predict_reference.json``.

Checkpoints whose weights depend only on their state-dict keys and shapes (not on how a
library initialises a model), a fixed synthetic mammogram, and a summary of the
:class:`mammocad.predict.Predictor`'s answer: the shallow CNN's probability, the heatmap
(every 32nd pixel), the regions and their probabilities. The JSON was written by the
implementation of ``mammocad predict`` that imported torchvision/timm and ran the
networks with separate batch normalisation; ``test_predict.py`` checks that faster
implementations give the same answers to float tolerance.

Rewrite the JSON (only after checking that a change of answers is intended) with
``PYTHONPATH=src python tests/predict_reference.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mammocad.checkpoint import save_checkpoint
from mammocad.config import to_dict
from mammocad.enhance import EnhanceConfig
from mammocad.models.backbones import build_architecture, get_spec
from mammocad.models.shallow import ShallowCNN, ShallowConfig
from mammocad.patches import PatchesConfig

REFERENCE = Path(__file__).resolve().parent / "predict_reference.json"
#: (backbone, init source) of the recorded cases: the default run's bundled-int8
#: MobileNets (TensorFlow padding) and the library layouts (scratch).
CASES = (
    ("mobilenet_v1", "bundled-int8"),
    ("mobilenet_v1", "scratch"),
    ("mobilenet_v2", "bundled-int8"),
    ("mobilenet_v2", "scratch"),
)
PATCH_PX = 160.0
PATCH_SIZE = 128
#: Small enough that the 1024 × 640 image's heatmap runs in several stripes.
TILE_PIXELS = 96_000
THRESHOLD = 0.6
#: Heatmap pixels recorded: every STEP-th row and column.
STEP = 32
#: Classifier weight factors that spread the heatmap over (0, 1) without saturating it.
HEAD_GAIN = {"mobilenet_v1": 4.0, "mobilenet_v2": 1.0}


def fixed_image(h: int = 1024, w: int = 640, seed: int = 7) -> np.ndarray:
    """A breast-like 16-bit image with two brighter masses, chest wall on the left."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    image = rng.integers(0, 600, (h, w)).astype(np.float64)
    breast = ((yy - h / 2) / (0.46 * h)) ** 2 + (xx / (0.7 * w)) ** 2 <= 1
    image[breast] = 22000 + 4000 * rng.standard_normal(int(breast.sum()))
    for cy, cx, r in ((0.35 * h, 0.3 * w, 40), (0.65 * h, 0.45 * w, 28)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 15000
    return np.clip(image, 0, 65535).astype(np.uint16)


def fill_deterministic(model: torch.nn.Module, seed: int) -> None:
    """Sets every state-dict entry from a seeded generator, in the order of sorted keys.

    Convolution and linear weights get He-scaled normal values, batch-norm statistics
    plausible ranges; two models with the same keys and shapes get the same weights.
    """
    gen = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            t = state[key]
            if not t.is_floating_point():
                t.zero_()
            elif key.endswith("running_var"):
                t.copy_(0.5 + 1.5 * torch.rand(t.shape, generator=gen))
            elif key.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.ndim == 1 and key.endswith("weight"):  # batch-norm scale
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif t.ndim == 1:  # biases
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) * math.sqrt(2.0 / fan_in))


def write_models(folder: Path, backbone: str, init: str) -> tuple[Path, Path]:
    """The patch network and shallow CNN checkpoints of one case."""
    spec = get_spec(backbone)
    model = build_architecture(backbone, init)
    fill_deterministic(model, seed=11)
    head = model.get_submodule(spec.classifier)
    with torch.no_grad():  # a map with contrast: a few regions above the threshold
        head.weight.mul_(HEAD_GAIN[backbone])
        head.bias.copy_(torch.tensor([0.0, -1.0]))
    patches = PatchesConfig(image_size=PATCH_SIZE)
    config = {
        "input": {"channels": 3, "mean": list(spec.mean), "std": list(spec.std)},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(patches),
        "patch_px": PATCH_PX,
    }
    metrics = {"init": init}
    backbone_path = folder / f"{backbone}-{init}.pt"
    save_checkpoint(backbone_path, model, backbone, config, 1, metrics)
    shallow = ShallowCNN(ShallowConfig(channels=(4, 8)))
    fill_deterministic(shallow, seed=5)
    shallow_config = {
        "input": {"channels": 1, "mean": [0.3], "std": [0.2]},
        "shallow": {"positive": "abnormal", "channels": [4, 8], "dropout": 0.3},
        "enhance": to_dict(EnhanceConfig()),
        "patches": to_dict(patches),
    }
    shallow_path = folder / "shallow_cnn.pt"
    save_checkpoint(shallow_path, shallow, "shallow_cnn", shallow_config, 1, {})
    return backbone_path, shallow_path


def export_graphs(
    backbone_path: Path,
    shallow_path: Path | None,
    image: np.ndarray,
    patches: PatchesConfig,
    work: Path,
) -> None:
    """Writes a checkpoint pair's ONNX graphs where ``mammocad predict`` looks for them, as
    the ``export`` and ``export_shallow`` stages do, checked on patches and down-sized
    copies of ``image`` (PNGs written to ``work``)."""
    import pandas as pd

    from mammocad.checkpoint import load_checkpoint, load_trained_backbone
    from mammocad.deployed import export_folder
    from mammocad.export.backbone import _halo
    from mammocad.export.cam import write_cam, write_shallow
    from mammocad.io import write_png
    from mammocad.models.data import ImageSet
    from mammocad.models.shallow import shallow_from_checkpoint
    from mammocad.patches import make_full, make_patch

    work.mkdir(parents=True, exist_ok=True)

    def image_set(images: list[np.ndarray], name: str) -> ImageSet:
        rows = []
        for i, picture in enumerate(images):
            write_png(work / f"{name}{i}.png", picture)
            pathology = "MALIGNANT" if i % 2 else "BENIGN"
            rows.append(
                {
                    "image_id": f"{name}{i}",
                    "patient_id": f"P{i}",
                    "pathology": pathology,
                    "image_path": f"{name}{i}.png",
                }
            )
        label = lambda row: int(row["pathology"] == "MALIGNANT")  # noqa: E731
        return ImageSet(pd.DataFrame(rows), work, label)

    h, w = image.shape
    side = min(h, w) // 2
    corners = ((0, 0), (h // 4, w // 4), (h - side, w - side), (h // 2 - side // 2, 0))
    crops = [make_patch(image[y : y + side, x : x + side], patches) for y, x in corners]
    model, ckpt = load_trained_backbone(backbone_path)
    folder = export_folder(backbone_path)
    folder.mkdir(parents=True, exist_ok=True)
    halo = _halo(backbone_path)
    write_cam(model, ckpt, backbone_path, folder, image_set(crops, "patch"), 0.5, 17, 1e-4, halo)
    if shallow_path is not None:
        ckpt = load_checkpoint(shallow_path)
        fulls = [make_full(picture, patches)[0] for picture in (image, image[::-1])]
        folder = export_folder(shallow_path)
        folder.mkdir(parents=True, exist_ok=True)
        shallow = shallow_from_checkpoint(ckpt)
        write_shallow(shallow, ckpt, shallow_path, folder, image_set(fulls, "full"), 17, 1e-4)


def predict_case(folder: Path, backbone: str, init: str, engine: str = "torch") -> dict[str, Any]:
    """The summary of one case's prediction on :func:`fixed_image`, with the networks on
    PyTorch or (``engine="onnx"``) on ONNX Runtime from their exported graphs."""
    from mammocad.predict import Predictor

    backbone_path, shallow_path = write_models(folder, backbone, init)
    if engine == "onnx":
        patches = PatchesConfig(image_size=PATCH_SIZE)
        export_graphs(backbone_path, shallow_path, fixed_image(), patches, folder / "pngs")
    predictor = Predictor(
        backbone_path,
        shallow_path,
        EnhanceConfig(),
        PatchesConfig(image_size=PATCH_SIZE),
        PATCH_PX,
        threshold=THRESHOLD,
        tile_pixels=TILE_PIXELS,
        engine=engine,
    )
    assert predictor.engine == engine
    prediction = predictor.predict_image(fixed_image())
    result = prediction.result
    return {
        "shallow": result["shallow"]["cancer_probability"],
        "working_size": result["working_size"],
        "heatmap_max": result["heatmap_max"],
        "heatmap": prediction.heatmap.values[::STEP, ::STEP].round(6).tolist(),
        "regions": result["regions"] or [result["strongest_below_threshold"]],
    }


def main() -> None:
    import tempfile

    torch.set_num_threads(1)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, init in CASES:
            out[f"{backbone}/{init}"] = predict_case(Path(tmp), backbone, init)
    REFERENCE.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    for key, case in out.items():
        print(key, case["shallow"], case["heatmap_max"], case["regions"])


if __name__ == "__main__":
    main()
