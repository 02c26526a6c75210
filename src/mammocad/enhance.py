"""Contrast enhancement and denoising of 16-bit mammograms (paper §3.2).

The paper removes noise and raises contrast with an adaptive mean filter, CLAHE and a
median filter. Each filter here is a pure function on a 2-D ``uint16`` (or ``uint8``)
array, registered by name, so that ``params.yaml`` can chain them in any order.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mammocad.io import atomic_dir, read_png, write_png
from mammocad.manifest import read_manifest, write_manifest
from mammocad.parallel import imap
from mammocad.registry import Registry


@dataclass(frozen=True)
class ClaheConfig:
    """CLAHE settings.

    Attributes:
        clip_limit: contrast limit: a histogram bin may hold at most ``clip_limit`` times
            the mean count of a ``bins``-level histogram of its tile.
        tile_grid: tiles per side of a full mammogram; ROI crops get the same tile size in
            pixels (so fewer tiles), so that a crop is enhanced as it is in its image.
        bins: grey levels of the histogram (a power of two, at most 65536). OpenCV always
            uses 65,536 bins on 16-bit data, where a tile rarely holds more than one pixel
            per bin and every clip limit acts alike; quantising to ``bins`` levels first
            restores the usual meaning of ``clip_limit`` at any image size.
    """

    clip_limit: float = 2.0
    tile_grid: int = 8
    bins: int = 4096


@dataclass(frozen=True)
class MedianConfig:
    """Median filter settings.

    Attributes:
        kernel: aperture side; OpenCV accepts only 3 or 5 on 16-bit images.
    """

    kernel: int = 3


@dataclass(frozen=True)
class AdaptiveMeanConfig:
    """Adaptive mean (local noise reduction) filter settings.

    Attributes:
        kernel: side of the local window.
        noise_variance: noise variance in squared grey levels of the input's dtype;
            ``0`` estimates it as the mean of the local variances.
    """

    kernel: int = 5
    noise_variance: float = 0.0


@dataclass(frozen=True)
class EnhanceConfig:
    """The enhance stage: which filters run, in which order, with which settings.

    Attributes:
        chain: filter names applied in order (see :data:`FILTERS`).
        clahe: settings of the ``clahe`` filter.
        median: settings of the ``median`` filter.
        adaptive_mean: settings of the ``adaptive_mean`` filter.
    """

    chain: tuple[str, ...] = ("clahe", "median")
    clahe: ClaheConfig = field(default_factory=ClaheConfig)
    median: MedianConfig = field(default_factory=MedianConfig)
    adaptive_mean: AdaptiveMeanConfig = field(default_factory=AdaptiveMeanConfig)


Filter = Callable[[np.ndarray, EnhanceConfig], np.ndarray]
FILTERS: Registry[Filter] = Registry("enhancement filter")
log = logging.getLogger(__name__)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a 2-D uint8 or uint16 image, got {image.dtype} {image.shape}")


def clahe(
    image: np.ndarray, clip_limit: float = 2.0, tile_grid: int = 8, bins: int = 4096
) -> np.ndarray:
    """Contrast Limited Adaptive Histogram Equalization (paper §3.2).

    The image is quantised to ``bins`` grey levels (low bits cleared, so values keep their
    scale) and OpenCV's clip limit is scaled to match, which makes this exactly CLAHE with
    a ``bins``-level histogram while the output keeps OpenCV's 16-bit look-up tables.

    Args:
        image: 2-D ``uint8`` or ``uint16`` array.
        clip_limit: contrast limit relative to the mean bin count, must be > 0.
        tile_grid: tiles per side, must be >= 1.
        bins: histogram levels, a power of two; capped at 256 for ``uint8`` images.

    Returns:
        The equalised image, same shape and dtype.
    """
    _check_image(image)
    if clip_limit <= 0:
        raise ValueError(f"clahe clip_limit must be > 0, got {clip_limit}")
    if tile_grid < 1:
        raise ValueError(f"clahe tile_grid must be >= 1, got {tile_grid}")
    levels = 65536 if image.dtype == np.uint16 else 256
    if bins < 2 or bins & (bins - 1) or bins > 65536:
        raise ValueError(f"clahe bins must be a power of two in [2, 65536], got {bins}")
    step = levels // min(bins, levels)
    image = np.ascontiguousarray(image)
    if step > 1:
        image = cv2.bitwise_and(image, levels - step)
    op = cv2.createCLAHE(clipLimit=float(clip_limit) * step, tileGridSize=(tile_grid, tile_grid))
    return op.apply(image)


def crop_tile_grid(
    crop_shape: tuple[int, int], full_shape: tuple[int, int], tile_grid: int
) -> int:
    """Tiles per side for an ROI crop so that its tiles match its full image's in pixels."""
    tile_h, tile_w = full_shape[0] / tile_grid, full_shape[1] / tile_grid
    grid = round(max(crop_shape[0] / tile_h, crop_shape[1] / tile_w))
    return int(min(max(grid, 1), tile_grid))


def effective_clip_count(
    shape: tuple[int, int], clip_limit: float, tile_grid: int, bins: int = 65536
) -> int:
    """The per-bin count at which CLAHE clips a tile's histogram.

    OpenCV uses ``max(1, int(clip_limit · tile_area / bins))``: when that floor of one
    count applies, every smaller clip limit gives the same result.
    """
    tile_area = (shape[0] // tile_grid) * (shape[1] // tile_grid)
    return max(1, int(clip_limit * tile_area / bins))


def median(image: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Median filter that removes impulse noise while keeping edges (paper §3.2).

    Args:
        image: 2-D ``uint8`` or ``uint16`` array.
        kernel: odd aperture; for ``uint16`` OpenCV supports only 3 and 5.

    Returns:
        The filtered image, same shape and dtype.
    """
    _check_image(image)
    allowed = (3, 5) if image.dtype == np.uint16 else tuple(range(3, 256, 2))
    if kernel == 1:
        return image.copy()
    if kernel not in allowed:
        raise ValueError(
            f"median kernel {kernel} is not supported for {image.dtype} images "
            f"(OpenCV takes 3 or 5 on 16-bit data)"
        )
    return cv2.medianBlur(np.ascontiguousarray(image), kernel)


def adaptive_mean(image: np.ndarray, kernel: int = 5, noise_variance: float = 0.0) -> np.ndarray:
    """Adaptive local noise-reduction ("adaptive mean") filter (paper §3.2).

    ``out = g - (σn² / σL²) · (g - mL)``, with the ratio capped at 1 so that flat regions
    take the local mean and edges (large local variance) keep their value.

    Args:
        image: 2-D ``uint8`` or ``uint16`` array.
        kernel: odd side of the local window, >= 3.
        noise_variance: σn²; ``0`` estimates it as the mean local variance.

    Returns:
        The filtered image, same shape and dtype.
    """
    _check_image(image)
    if kernel < 3 or kernel % 2 == 0:
        raise ValueError(f"adaptive_mean kernel must be odd and >= 3, got {kernel}")
    if noise_variance < 0:
        raise ValueError(f"adaptive_mean noise_variance must be >= 0, got {noise_variance}")
    g = image.astype(np.float32)
    k = (kernel, kernel)
    mean = cv2.boxFilter(g, -1, k, borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.boxFilter(g * g, -1, k, borderType=cv2.BORDER_REFLECT)
    var = np.maximum(mean_sq - mean * mean, 0.0)
    nv = float(var.mean()) if noise_variance == 0 else float(noise_variance)
    ratio = np.divide(nv, var, out=np.ones_like(var), where=var > 0)
    np.minimum(ratio, 1.0, out=ratio)
    out = g - ratio * (g - mean)
    info = np.iinfo(image.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)


FILTERS.add(
    "clahe",
    lambda img, cfg: clahe(img, cfg.clahe.clip_limit, cfg.clahe.tile_grid, cfg.clahe.bins),
)
FILTERS.add("median", lambda img, cfg: median(img, cfg.median.kernel))
FILTERS.add(
    "adaptive_mean",
    lambda img, cfg: adaptive_mean(
        img, cfg.adaptive_mean.kernel, cfg.adaptive_mean.noise_variance
    ),
)


def validate(cfg: EnhanceConfig) -> None:
    """Fails early, naming the key, if the chain names an unknown filter or is empty."""
    if not cfg.chain:
        raise ValueError("enhance.chain is empty: name at least one filter")
    for name in cfg.chain:
        if name not in FILTERS:
            raise ValueError(
                f"enhance.chain: unknown filter {name!r}; valid names: {', '.join(FILTERS)}"
            )
    if cfg.median.kernel not in (1, 3, 5) and "median" in cfg.chain:
        raise ValueError(
            f"enhance.median.kernel={cfg.median.kernel}: 16-bit images take only 3 or 5"
        )


def apply_chain(image: np.ndarray, cfg: EnhanceConfig) -> np.ndarray:
    """Runs the configured filters on one image, in ``cfg.chain`` order."""
    for name in cfg.chain:
        image = FILTERS.get(name)(image, cfg)
    return image


def _warn_clip_floor(manifest: pd.DataFrame, cfg: EnhanceConfig) -> None:
    if "clahe" not in cfg.chain or manifest.empty or "kind" not in manifest:
        return
    full = manifest[manifest["kind"] == "full"]
    if full.empty:
        return
    shape = (int(full["height"].median()), int(full["width"].median()))
    c = cfg.clahe
    exact = c.clip_limit * (shape[0] // c.tile_grid) * (shape[1] // c.tile_grid) / c.bins
    if exact < 1:
        log.warning(
            "enhance.clahe.clip_limit=%s is below one count per bin for %d×%d images with "
            "%d bins: any clip limit up to %.1f gives the same result (lower clahe.bins)",
            c.clip_limit,
            shape[0],
            shape[1],
            c.bins,
            c.clip_limit / exact,
        )


def _tasks(
    manifest: pd.DataFrame,
    images: Sequence[str],
    in_dir: Path,
    out_dir: Path,
    cfg: EnhanceConfig,
) -> list[tuple[Path, Path, EnhanceConfig, bool]]:
    """One task per image; ROI crops get a tile grid scaled to their full image's tiles."""
    shapes = {}
    if {"kind", "height", "width", "full_image_id"} <= set(manifest.columns):
        for row in manifest.to_dict("records"):
            if row["kind"] == "full":
                shapes[row["image_id"]] = (int(row["height"]), int(row["width"]))
    per_path: dict[str, EnhanceConfig] = {}
    if shapes:
        for row in manifest.to_dict("records"):
            full = shapes.get(row["full_image_id"])
            if row["kind"] == "roi" and full:
                grid = crop_tile_grid(
                    (int(row["height"]), int(row["width"])), full, cfg.clahe.tile_grid
                )
                per_path[str(row["image_path"])] = dataclasses.replace(
                    cfg, clahe=dataclasses.replace(cfg.clahe, tile_grid=grid)
                )
    return [(in_dir / p, out_dir / p, per_path.get(p, cfg), False) for p in dict.fromkeys(images)]


def _enhance_one(task: tuple[Path, Path, EnhanceConfig, bool]) -> None:
    src, dst, cfg, copy_only = task
    image = read_png(src)
    write_png(dst, image if copy_only else apply_chain(image, cfg))


def enhance_dataset(
    in_dir: Path,
    out_dir: Path,
    cfg: EnhanceConfig,
    workers: int = 0,
    paths: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Enhances every full image and ROI crop listed in ``in_dir/manifest.csv``.

    Masks are copied unchanged, so ``out_dir`` is self-contained with the same relative
    paths and an identical manifest. The output directory appears only when complete.

    Args:
        in_dir: a ``convert`` output directory with ``manifest.csv``.
        out_dir: directory to create (replaced if it exists).
        cfg: the filter chain.
        workers: worker processes, ``0`` for every core.
        paths: optional subset of relative image paths (used by benchmarks).

    Returns:
        The manifest written to ``out_dir``.
    """
    validate(cfg)
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    manifest = read_manifest(in_dir / "manifest.csv", ["image_path"], made_by="convert")
    images = [str(p) for p in manifest["image_path"] if p] if paths is None else list(paths)
    _warn_clip_floor(manifest, cfg)
    masks = sorted({str(p) for p in manifest.get("mask_path", []) if p})
    with atomic_dir(out_dir) as tmp:
        tasks = _tasks(manifest, images, in_dir, tmp, cfg)
        tasks += [(in_dir / p, tmp / p, cfg, True) for p in masks]
        for _ in imap(_enhance_one, tasks, workers=workers, desc="enhance"):
            pass
        write_manifest(manifest, tmp / "manifest.csv")
    return manifest
