"""ROI patch selection and resizing, and down-sized full mammograms (paper §3.2).

CBIS-DDSM ROI crops come in all shapes; the paper drops those whose aspect ratio
``r = w / h`` lies outside [0.4, 1.5] and resizes the rest to the 224 × 224 input of
ImageNet models, with cubic interpolation when up-sampling and area interpolation when
down-sampling. The full mammograms are down-sized the same way for the shallow CNN.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from mammocad.io import atomic_dir, read_png, write_csv, write_png
from mammocad.manifest import read_manifest, write_manifest
from mammocad.parallel import imap


@dataclass(frozen=True)
class PatchesConfig:
    """The patches stage.

    Attributes:
        image_size: side of the square ROI patches fed to the backbones.
        min_aspect: smallest kept aspect ratio w/h of an ROI crop.
        max_aspect: largest kept aspect ratio w/h of an ROI crop.
        keep_aspect: pad crops to a square before resizing instead of stretching them.
        abnormality_types: ROI types kept as patches (``mass``, ``calcification``).
        full_height: height of the down-sized full mammograms for the shallow CNN.
        full_width: width of the down-sized full mammograms.
        orient_full: flip full mammograms so that the chest wall is on the left.
    """

    image_size: int = 224
    min_aspect: float = 0.4
    max_aspect: float = 1.5
    keep_aspect: bool = False
    abnormality_types: tuple[str, ...] = ("mass",)
    full_height: int = 256
    full_width: int = 160
    orient_full: bool = True

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"patches.image_size must be >= 8, got {self.image_size}")
        if not 0 < self.min_aspect <= self.max_aspect:
            raise ValueError(
                "patches.min_aspect and patches.max_aspect must satisfy "
                f"0 < min_aspect <= max_aspect, got {self.min_aspect}, {self.max_aspect}"
            )
        if self.full_height < 8 or self.full_width < 8:
            raise ValueError("patches.full_height and patches.full_width must be >= 8")


def aspect_ratio(width: int, height: int) -> float:
    """The paper's ``r = w / h``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image sides must be positive, got {width}×{height}")
    return width / height


def aspect_ok(width: int, height: int, min_aspect: float, max_aspect: float) -> bool:
    """Whether an ROI of ``width × height`` is kept (bounds inclusive)."""
    return min_aspect <= aspect_ratio(width, height) <= max_aspect


def _interp(src: int, dst: int) -> int:
    return cv2.INTER_CUBIC if dst > src else cv2.INTER_AREA


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes with cubic interpolation where an axis grows and area where it shrinks.

    The two axes are resized separately so that a crop that must grow in one direction and
    shrink in the other gets the right interpolation for each (paper §3.2).

    Args:
        image: 2-D array (``uint8``, ``uint16`` or ``float32``).
        height: target rows.
        width: target columns.

    Returns:
        The resized image, same dtype (cubic overshoot saturates at the dtype's range).
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    h, w = image.shape
    out = np.ascontiguousarray(image)
    if w != width:
        out = cv2.resize(out, (width, h), interpolation=_interp(w, width))
    if h != height:
        out = cv2.resize(out, (width, height), interpolation=_interp(h, height))
    return out


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pads the shorter side symmetrically with zeros so the image becomes square."""
    h, w = image.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    return cv2.copyMakeBorder(
        image, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=0
    )


def chest_wall_on_right(image: np.ndarray) -> bool:
    """Whether the breast (and so the chest wall) lies on the image's right half."""
    w = image.shape[1]
    left = float(image[:, : w // 2].astype(np.float64).sum())
    right = float(image[:, w - w // 2 :].astype(np.float64).sum())
    return right > left


def make_patch(crop: np.ndarray, cfg: PatchesConfig) -> np.ndarray:
    """Turns an ROI crop into a ``image_size`` square patch."""
    if cfg.keep_aspect:
        crop = pad_to_square(crop)
    return resize(crop, cfg.image_size, cfg.image_size)


def make_full(image: np.ndarray, cfg: PatchesConfig) -> tuple[np.ndarray, bool]:
    """Down-sizes a full mammogram, flipping it so the chest wall is on the left.

    Returns:
        The resized image and whether it was flipped horizontally.
    """
    flipped = cfg.orient_full and chest_wall_on_right(image)
    if flipped:
        image = image[:, ::-1]
    return resize(image, cfg.full_height, cfg.full_width), flipped


def drop_reason(row: dict[str, Any], cfg: PatchesConfig) -> str | None:
    """Why an ROI row is not turned into a patch, or ``None`` if it is kept."""
    if row["abnormality_type"] not in cfg.abnormality_types:
        return f"abnormality type {row['abnormality_type']} not in patches.abnormality_types"
    r = aspect_ratio(int(row["width"]), int(row["height"]))
    if r < cfg.min_aspect:
        return f"aspect ratio {r:.3f} below min_aspect {cfg.min_aspect}"
    if r > cfg.max_aspect:
        return f"aspect ratio {r:.3f} above max_aspect {cfg.max_aspect}"
    return None


def _process(task: tuple[Path, Path, str, PatchesConfig]) -> bool:
    src, dst, kind, cfg = task
    image = read_png(src)
    if kind == "roi":
        write_png(dst, make_patch(image, cfg))
        return False
    out, flipped = make_full(image, cfg)
    write_png(dst, out)
    return flipped


#: Manifest columns read for every row (ROI rows also need ``abnormality_type``).
_USED_COLUMNS = ("image_id", "kind", "image_path", "height", "width")


def build_patches(
    in_dir: Path, out_dir: Path, cfg: PatchesConfig, workers: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Builds ROI patches and down-sized full images from an enhanced dataset.

    Args:
        in_dir: an ``enhance`` output directory with ``manifest.csv``.
        out_dir: directory to create: ``roi/<image_id>.png``, ``full/<image_id>.png``,
            ``manifest.csv`` (kept rows, paths relative to ``out_dir``) and ``dropped.csv``.
        cfg: the stage's settings.
        workers: worker processes, ``0`` for every core.

    Returns:
        The kept manifest, the dropped rows with reasons, and a metrics dict.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    manifest = read_manifest(in_dir / "manifest.csv", _USED_COLUMNS, made_by="enhance")
    rows = manifest.to_dict("records")
    kept, dropped, tasks = [], [], []
    for row in rows:
        kind = row["kind"]
        reason = drop_reason(row, cfg) if kind == "roi" else None
        if reason:
            dropped.append(
                {
                    "image_id": row["image_id"],
                    "patient_id": row["patient_id"],
                    "pathology": row["pathology"],
                    "reason": reason,
                }
            )
            continue
        rel = f"{kind}/{row['image_id']}.png"
        tasks.append((in_dir / row["image_path"], out_dir / "__tmp__" / rel, kind, cfg))
        kept.append(
            {
                **row,
                "source_height": row["height"],
                "source_width": row["width"],
                "image_path": rel,
            }
        )
    with atomic_dir(out_dir) as tmp:
        tasks = [
            (src, tmp / dst.relative_to(out_dir / "__tmp__"), k, c) for src, dst, k, c in tasks
        ]
        flips = list(imap(_process, tasks, workers=workers, desc="patches"))
        for row, flipped in zip(kept, flips, strict=True):
            row["flipped"] = bool(flipped)
            if row["kind"] == "roi":
                row["height"] = row["width"] = cfg.image_size
            else:
                row["height"], row["width"] = cfg.full_height, cfg.full_width
        kept_df = pd.DataFrame(
            kept,
            columns=[*manifest.columns, "source_height", "source_width", "flipped"],
        )
        dropped_df = pd.DataFrame(
            dropped, columns=["image_id", "patient_id", "pathology", "reason"]
        )
        write_manifest(kept_df, tmp / "manifest.csv")
        write_csv(tmp / "dropped.csv", dropped_df)
    return kept_df, dropped_df, patches_metrics(manifest, kept_df, dropped_df)


def _reason_category(reason: str) -> str:
    for key in ("below min_aspect", "above max_aspect", "abnormality type"):
        if key in reason:
            return key.replace(" ", "_")
    return "other"


def patches_metrics(
    manifest: pd.DataFrame, kept: pd.DataFrame, dropped: pd.DataFrame
) -> dict[str, Any]:
    """Counts of ROIs in, kept and dropped (by reason and pathology), and full images."""
    roi_in = manifest[manifest["kind"] == "roi"]
    roi_kept = kept[kept["kind"] == "roi"]
    by_reason = Counter(_reason_category(r) for r in dropped["reason"])
    return {
        "roi_in": int(len(roi_in)),
        "roi_kept": int(len(roi_kept)),
        "roi_dropped": int(len(dropped)),
        "roi_dropped_by_reason": dict(sorted(by_reason.items())),
        "roi_kept_by_pathology": {
            str(k): int(v) for k, v in roi_kept["pathology"].value_counts().sort_index().items()
        },
        "full_images": int((kept["kind"] == "full").sum()),
        "full_flipped": int(kept.loc[kept["kind"] == "full", "flipped"].sum()),
    }
