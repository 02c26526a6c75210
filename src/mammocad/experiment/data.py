"""The rows each model reads from the split and augmented manifests, and their grey levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mammocad.models.data import ImageSet


def read_split(split_dir: Path, augmented_dir: Path, kind: str) -> dict[str, pd.DataFrame]:
    """The train (augmented), val and test rows of one kind (``roi`` or ``full``)."""
    frames = {"train": pd.read_csv(augmented_dir / "train.csv", keep_default_na=False)}
    for name in ("val", "test"):
        path = split_dir / f"{name}.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the split has no {name} patients")
        frames[name] = pd.read_csv(path, keep_default_na=False)
    out = {}
    for name, frame in frames.items():
        part = frame[frame["kind"] == kind].reset_index(drop=True)
        if kind == "roi":
            part = part[part["pathology"].isin(["BENIGN", "MALIGNANT"])].reset_index(drop=True)
        if part.empty:
            raise ValueError(f"the {name} split holds no {kind} images")
        out[name] = part
    return out


def _sets(
    frames: dict[str, pd.DataFrame],
    roots: dict[str, Path],
    label_fn,
    channels: int,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
) -> dict[str, ImageSet]:
    return {
        name: ImageSet(
            frame,
            roots[name],
            label_fn,
            channels=channels,
            mean=mean,
            std=std,
            desc=f"load {name}",
        )
        for name, frame in frames.items()
    }


def grey_stats(dataset: ImageSet) -> tuple[float, float]:
    """Mean and standard deviation of a preloaded set's grey levels in [0, 1]."""
    x = dataset.images.to(torch.float64) / dataset._scale
    return float(x.mean()), float(x.std())


def training_patch_px(frame: pd.DataFrame) -> float:
    """Median side, in full-image pixels, of the ROI crops behind the training patches.

    Localization rescales a full mammogram so that lesions appear at this training scale.
    """
    sides = frame.loc[frame["kind"] == "roi", ["source_height", "source_width"]]
    if sides.empty:
        return float("nan")
    return float(np.median(sides.astype(float).max(axis=1)))


def training_image_px(frame: pd.DataFrame) -> float:
    """Median long side, in pixels, of the full mammograms in a manifest's ``full`` rows.

    ``mammocad predict`` compares an input's long side with it to bring images of another
    pixel size (a full-resolution scan for a model trained on down-sized films) to the
    training scale: mammograms span about the same physical height whatever the scanner.
    """
    sides = frame.loc[frame["kind"] == "full", ["source_height", "source_width"]]
    if sides.empty:
        return float("nan")
    return float(np.median(sides.astype(float).max(axis=1)))
