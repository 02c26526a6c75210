"""In-memory image sets for training and evaluating the classifiers of paper §3–4.

Both networks of the paper read small images: the shallow CNN (Fig. 2) down-sized full
mammograms, the fine-tuned backbones (§4.3) 224×224 ROI patches. A whole split therefore
fits in memory, and :class:`ImageSet` reads every PNG once, at construction, into one
tensor that keeps the images' own bit depth (8 or 16 bits: half the memory of float32 and
exact). Batches are cut from it with one indexing operation and converted to float there,
so reading images never limits the speed of training.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from mammocad.io import read_png

logger = logging.getLogger(__name__)

#: Columns an :class:`ImageSet` frame must have.
REQUIRED_COLUMNS = ("image_id", "patient_id", "pathology", "image_path")

LabelFn = Callable[[Mapping[str, Any]], int]


def label_malignant(row: Mapping[str, Any]) -> int:
    """Label of a mass patch for the fine-tuned backbones (paper §4.1).

    "In second MobileNet model P is Mass malignant and N is mass benign."

    Args:
        row: a manifest row with a ``pathology`` of ``BENIGN`` or ``MALIGNANT``.

    Returns:
        ``0`` for benign, ``1`` for malignant.

    Raises:
        ValueError: for any other pathology (a normal image has no benign/malignant label),
            naming the image.
    """
    pathology = row["pathology"]
    if pathology == "BENIGN":
        return 0
    if pathology == "MALIGNANT":
        return 1
    raise ValueError(
        f"{row.get('image_id', '?')}: pathology {pathology!r} has no benign/malignant label "
        "(expected BENIGN or MALIGNANT)"
    )


def label_cancerous(row: Mapping[str, Any], positive: Literal["malignant", "abnormal"]) -> int:
    """Label of a full mammogram for the shallow CNN (paper §4.1, Fig. 2).

    "In our first simple classifier P is cancerous and N is non-cancerous." The paper does
    not say where benign findings go: with ``positive="abnormal"`` every finding is
    positive, so the shallow CNN passes benign and malignant masses alike on to the mass
    classifier (the flow of paper Fig. 1); with ``positive="malignant"`` only malignant
    findings are.

    Args:
        row: a manifest row with a ``pathology`` of ``NORMAL``, ``BENIGN`` or ``MALIGNANT``.
        positive: which findings count as the positive class (bind it with
            :func:`functools.partial` to get a ``label_fn``).

    Returns:
        ``0`` (normal, or benign when ``positive="malignant"``) or ``1``.

    Raises:
        ValueError: for an unknown ``positive`` or pathology, naming the image.
    """
    if positive not in ("malignant", "abnormal"):
        raise ValueError(f"positive must be 'malignant' or 'abnormal', got {positive!r}")
    pathology = row["pathology"]
    if pathology == "NORMAL":
        return 0
    if pathology == "MALIGNANT":
        return 1
    if pathology == "BENIGN":
        return int(positive == "abnormal")
    raise ValueError(
        f"{row.get('image_id', '?')}: unknown pathology {pathology!r} "
        "(expected NORMAL, BENIGN or MALIGNANT)"
    )


def _full_scale(dtype: np.dtype) -> float:
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    raise ValueError(f"expected a uint8 or uint16 image, got {dtype}")


class ImageSet(Dataset):
    """The images of one split, preloaded, with their labels and patients.

    Images are scaled from their full bit range to [0, 1] (16-bit by 65535, 8-bit by 255),
    then optionally replicated to three channels and normalised per channel, as the
    ImageNet-pretrained backbones expect (paper §3: inputs must be normalised "to the same
    format that the network was initially trained on").

    Args:
        frame: one row per image with at least ``image_id``, ``patient_id``, ``pathology``
            and ``image_path`` (relative to ``root``); the row order is kept.
        root: directory the ``image_path`` column is relative to.
        label_fn: maps a row (a mapping of column → value) to a class index, e.g.
            :func:`label_malignant`.
        channels: ``1`` keeps grey levels; ``3`` replicates them for RGB backbones.
        mean: per-channel mean subtracted after scaling (length ``channels``); ``None``
            leaves the [0, 1] values as they are.
        std: per-channel standard deviation divided by; required with ``mean``.
        desc: progress-bar label while reading.

    Attributes:
        images: ``(N, H, W)`` uint8 or uint16 tensor of all images.
        labels: ``(N,)`` int64 tensor of class indices.
        groups: ``(N,)`` array of patient ids, for patient-level resampling.
        image_ids: ``(N,)`` array of image ids.
        frame: the frame, re-indexed 0..N-1.

    Raises:
        ValueError: for an empty frame, a missing column, images of different shapes or
            bit depths other than 8/16, or a mean/std that does not match ``channels``.
        FileNotFoundError: if an image file is missing, naming its path.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        root: str | os.PathLike,
        label_fn: LabelFn,
        *,
        channels: int = 1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        desc: str = "load images",
    ) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"image frame lacks column(s) {', '.join(missing)}")
        if len(frame) == 0:
            raise ValueError("image frame has no rows")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        self.channels = channels
        self._mean = self._std = None
        if mean is not None and std is not None:
            if len(mean) != channels or len(std) != channels:
                raise ValueError(
                    f"mean {tuple(mean)} and std {tuple(std)} need {channels} value(s) each"
                )
            if any(s <= 0 for s in std):
                raise ValueError(f"std must be positive, got {tuple(std)}")
            self._mean = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
            self._std = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)

        self.root = Path(root)
        self.frame = frame.reset_index(drop=True)
        self.image_ids = self.frame["image_id"].astype(str).to_numpy()
        self.groups = self.frame["patient_id"].astype(str).to_numpy()
        records = self.frame.to_dict("records")
        self.labels = torch.tensor([int(label_fn(r)) for r in records], dtype=torch.int64)
        self.images, self._scale = self._load(desc)
        logger.info(
            "loaded %d images of %s from %s (%s, %.1f MiB)",
            len(self),
            "×".join(map(str, self.images.shape[1:])),
            self.root,
            self.images.dtype,
            self.images.numel() * self.images.element_size() / 2**20,
        )

    def _load(self, desc: str) -> tuple[torch.Tensor, float]:
        paths = [self.root / p for p in self.frame["image_path"].astype(str)]
        first = read_png(paths[0])
        # 8-bit images go into a 16-bit array by ×257 when bit depths are mixed: v/255 is
        # exactly v·257/65535, so every image keeps its value in [0, 1].
        dtype = first.dtype
        _full_scale(dtype)
        array = np.empty((len(paths), *first.shape), dtype=dtype)
        for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=None)):
            image = first if i == 0 else read_png(path)
            if image.shape != first.shape:
                raise ValueError(
                    f"{path}: shape {image.shape} differs from {first.shape} of {paths[0]}"
                )
            _full_scale(image.dtype)
            if image.dtype != array.dtype:
                if image.dtype == np.uint8:
                    image = image.astype(np.uint16) * 257
                else:
                    array = array.astype(np.uint16) * 257
            array[i] = image
        return torch.from_numpy(array), _full_scale(array.dtype)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def normalised(self, mean: Sequence[float], std: Sequence[float]) -> ImageSet:
        """The same images and labels (shared, not copied) with another normalisation."""
        if len(mean) != self.channels or len(std) != self.channels or min(std) <= 0:
            raise ValueError(
                f"mean {tuple(mean)} and std {tuple(std)} need {self.channels} "
                "value(s) each, std positive"
            )
        other = copy.copy(self)
        other._mean = torch.tensor(mean, dtype=torch.float32).view(1, self.channels, 1, 1)
        other._std = torch.tensor(std, dtype=torch.float32).view(1, self.channels, 1, 1)
        return other

    def transform(self, raw: torch.Tensor) -> torch.Tensor:
        """Turns ``(B, H, W)`` stored pixels into ``(B, C, H, W)`` float network inputs."""
        x = raw.to(torch.float32).div_(self._scale).unsqueeze(1)
        if self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x.contiguous()

    def get_batch(self, index: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(images (B, C, H, W) float32, labels (B,) int64)`` for ``index``."""
        index = torch.as_tensor(index, dtype=torch.int64)
        return self.transform(self.images.index_select(0, index)), self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.get_batch([int(i)])
        return x[0], int(y[0])


def batches(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    order: torch.Tensor | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields ``(inputs, labels)`` mini-batches in this process (paper §4.2, batch size 64).

    An :class:`ImageSet` is cut with one indexing operation per batch; any other dataset
    is stacked item by item. The order depends only on ``generator``, so a seeded
    generator gives the same batches on every run.

    Args:
        dataset: an :class:`ImageSet` or any map-style dataset of ``(tensor, label)`` items.
        batch_size: images per batch.
        shuffle: draw a fresh permutation from ``generator`` on each call.
        generator: source of the permutation; required when shuffling, so that the order
            never comes from an unseeded global state.
        drop_last: skip a final batch smaller than ``batch_size``.
        order: the indices to cut, in order (e.g. one rank's shard); replaces
            ``shuffle``.

    Raises:
        ValueError: for ``batch_size < 1`` or shuffling without a generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)  # type: ignore[arg-type]
    if order is not None:
        n = len(order)
    elif shuffle:
        if generator is None:
            raise ValueError("shuffling needs a seeded torch.Generator")
        order = torch.randperm(n, generator=generator)
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        if isinstance(dataset, ImageSet):
            yield dataset.get_batch(index)
        else:
            items = [dataset[int(i)] for i in index]
            yield (
                torch.stack([torch.as_tensor(x) for x, _ in items]),
                torch.as_tensor([int(y) for _, y in items], dtype=torch.int64),
            )
