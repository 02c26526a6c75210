"""Training-set augmentation: flips, right-angle rotations, shear, zoom, random scale.

Paper §3.2: the small datasets make CNNs memorise, so training images are augmented with
flips and rotations. Only the training split is augmented; validation and test images are
never touched. Each image draws from its own generator seeded by ``(seed, image_id)``, so
the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pandas as pd

from mammocad.io import atomic_dir, read_png, write_csv, write_png
from mammocad.parallel import imap
from mammocad.registry import Registry


@dataclass(frozen=True)
class AugmentConfig:
    """The augment stage.

    Attributes:
        copies: augmented copies written per training image, besides the original.
        kinds: which images are augmented: ``roi`` patches and/or ``full`` mammograms.
        ops: operations tried on every copy, in this order (see :data:`OPS`).
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        rotate90: probability of a rotation by 90°, 180° or 270° (uniform; non-square
            images only take 180° so that their shape is kept).
        shear: largest horizontal shear factor; drawn uniformly in [-shear, shear].
        zoom: isotropic zoom about the centre by a factor in [1 - zoom, 1 + zoom].
        scale: independent x and y scale factors in [1 - scale, 1 + scale].
        border: how pixels shifted in from outside are filled: ``reflect`` or ``constant`` (0).
    """

    copies: int = 4
    kinds: tuple[str, ...] = ("roi", "full")
    ops: tuple[str, ...] = ("hflip", "vflip", "rotate90", "shear", "zoom", "scale")
    hflip: float = 0.5
    vflip: float = 0.5
    rotate90: float = 0.75
    shear: float = 0.2
    zoom: float = 0.15
    scale: float = 0.1
    border: Literal["reflect", "constant"] = "reflect"

    def __post_init__(self) -> None:
        if self.copies < 0:
            raise ValueError(f"augment.copies must be >= 0, got {self.copies}")
        for name in ("hflip", "vflip", "rotate90"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} is a probability in [0, 1]")
        for name in ("shear", "zoom", "scale"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1)")
        for kind in self.kinds:
            if kind not in ("roi", "full"):
                raise ValueError(f"augment.kinds: unknown kind {kind!r}; valid: roi, full")
        for op in self.ops:
            if op not in OPS:
                raise ValueError(f"augment.ops: unknown op {op!r}; valid names: {', '.join(OPS)}")


Op = Callable[[np.ndarray, np.random.Generator, AugmentConfig], tuple[np.ndarray, str]]
OPS: Registry[Op] = Registry("augmentation")


def _warp(image: np.ndarray, matrix: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    h, w = image.shape
    border = cv2.BORDER_REFLECT_101 if cfg.border == "reflect" else cv2.BORDER_CONSTANT
    return cv2.warpAffine(
        image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0
    )


def _about_centre(image: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """An affine matrix applying ``linear`` (2×2) about the image centre."""
    h, w = image.shape
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    offset = centre - linear @ centre
    return np.hstack([linear, offset[:, None]]).astype(np.float64)


def shear_image(image: np.ndarray, factor: float, cfg: AugmentConfig) -> np.ndarray:
    """Horizontal shear ``x' = x + factor · y`` about the centre."""
    return _warp(image, _about_centre(image, np.array([[1.0, factor], [0.0, 1.0]])), cfg)


def scale_image(image: np.ndarray, sx: float, sy: float, cfg: AugmentConfig) -> np.ndarray:
    """Scales x by ``sx`` and y by ``sy`` about the centre, keeping the canvas."""
    return _warp(image, _about_centre(image, np.array([[sx, 0.0], [0.0, sy]])), cfg)


@OPS.register("hflip")
def _hflip(image, rng, cfg):
    if rng.random() < cfg.hflip:
        return np.ascontiguousarray(image[:, ::-1]), "hflip"
    return image, ""


@OPS.register("vflip")
def _vflip(image, rng, cfg):
    if rng.random() < cfg.vflip:
        return np.ascontiguousarray(image[::-1, :]), "vflip"
    return image, ""


@OPS.register("rotate90")
def _rotate90(image, rng, cfg):
    if rng.random() >= cfg.rotate90:
        return image, ""
    k = int(rng.integers(1, 4)) if image.shape[0] == image.shape[1] else 2
    return np.ascontiguousarray(np.rot90(image, k)), f"rot{90 * k}"


@OPS.register("shear")
def _shear(image, rng, cfg):
    if cfg.shear == 0:
        return image, ""
    f = float(rng.uniform(-cfg.shear, cfg.shear))
    return shear_image(image, f, cfg), f"shear{f:+.3f}"


@OPS.register("zoom")
def _zoom(image, rng, cfg):
    if cfg.zoom == 0:
        return image, ""
    z = float(rng.uniform(1 - cfg.zoom, 1 + cfg.zoom))
    return scale_image(image, z, z, cfg), f"zoom{z:.3f}"


@OPS.register("scale")
def _scale(image, rng, cfg):
    if cfg.scale == 0:
        return image, ""
    sx, sy = (float(v) for v in rng.uniform(1 - cfg.scale, 1 + cfg.scale, 2))
    return scale_image(image, sx, sy, cfg), f"scale{sx:.3f}x{sy:.3f}"


def augment_image(
    image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, str]:
    """Applies every configured op once (each may decide to do nothing).

    Returns:
        The augmented image (same shape and dtype) and a ``+``-joined record of what was done.
    """
    done = []
    for name in cfg.ops:
        image, what = OPS.get(name)(image, rng, cfg)
        if what:
            done.append(what)
    return image, "+".join(done)


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """A generator that depends only on the seed and the image, not on scheduling."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def _augment_one(task: tuple[dict[str, Any], Path, Path, AugmentConfig, int]) -> list[dict]:
    row, src_dir, dst_dir, cfg, seed = task
    image = read_png(src_dir / row["image_path"])
    kind = row["kind"]
    out = []
    orig_rel = f"{kind}/{row['image_id']}.png"
    write_png(dst_dir / orig_rel, image)
    out.append(
        {
            **row,
            "image_path": orig_rel,
            "source_image_id": row["image_id"],
            "aug_index": 0,
            "ops": "",
        }
    )
    if kind not in cfg.kinds:
        return out
    rng = image_rng(seed, row["image_id"])
    for k in range(1, cfg.copies + 1):
        aug, ops = augment_image(image, rng, cfg)
        rel = f"{kind}/{row['image_id']}__aug{k}.png"
        write_png(dst_dir / rel, aug)
        out.append(
            {
                **row,
                "image_id": f"{row['image_id']}__aug{k}",
                "image_path": rel,
                "source_image_id": row["image_id"],
                "aug_index": k,
                "ops": ops,
            }
        )
    return out


def augment_dataset(
    split_frame: pd.DataFrame,
    patches_dir: Path,
    out_dir: Path,
    cfg: AugmentConfig,
    seed: int,
    workers: int = 0,
) -> pd.DataFrame:
    """Writes the training split, originals plus augmented copies, into ``out_dir``.

    Args:
        split_frame: the split manifest (``split`` column); only ``train`` rows are used.
        patches_dir: directory the manifest's ``image_path`` values are relative to.
        out_dir: directory to create with ``roi/``, ``full/`` and ``train.csv``.
        cfg: augmentation settings.
        seed: random seed.
        workers: worker processes, ``0`` for every core.

    Returns:
        The written ``train.csv`` frame, one row per image (original or copy).
    """
    train = split_frame[split_frame["split"] == "train"]
    if train.empty:
        raise ValueError("the training split is empty: nothing to augment")
    with atomic_dir(out_dir) as tmp:
        tasks = [(row, Path(patches_dir), tmp, cfg, seed) for row in train.to_dict("records")]
        rows = [r for rs in imap(_augment_one, tasks, workers=workers, desc="augment") for r in rs]
        frame = pd.DataFrame(rows)
        write_csv(tmp / "train.csv", frame)
    return frame
