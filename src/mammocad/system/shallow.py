"""The shallow CNN's probabilities of the test mammograms, joined to their heatmaps' rows."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mammocad.checkpoint import load_checkpoint
from mammocad.models.data import ImageSet, label_cancerous
from mammocad.models.shallow import ShallowCNN, shallow_from_checkpoint
from mammocad.train import predict_proba


def attach_shallow(images: pd.DataFrame, frame: pd.DataFrame, prob: Any) -> pd.DataFrame:
    """``images`` with the shallow CNN's probability of each image as ``p_shallow``.

    The heatmaps are computed on the enhanced full images and the shallow CNN reads their
    down-sized copies from the ``patches`` stage; both manifests carry the enhanced image's
    id, so the two are joined on ``image_id``, and patient and pathology must agree.

    Args:
        images: one row per heatmap with ``image_id``, ``patient_id`` and ``pathology``.
        frame: the rows the shallow CNN read (split/patches manifest), in ``prob``'s order.
        prob: the shallow CNN's probabilities.

    Raises:
        ValueError: when the two sets of images differ or a patient or pathology
            disagrees, naming an example.
    """
    shallow = pd.DataFrame({
        "image_id": frame["image_id"].astype(str).to_numpy(),
        "shallow_patient": frame["patient_id"].astype(str).to_numpy(),
        "shallow_pathology": frame["pathology"].astype(str).to_numpy(),
        "p_shallow": np.asarray(prob, dtype=np.float64),
    })  # fmt: skip
    ours, theirs = set(images["image_id"].astype(str)), set(shallow["image_id"])
    if ours != theirs or len(shallow) != len(theirs):
        diff = sorted(ours ^ theirs)
        raise ValueError(
            f"the shallow CNN's images differ from the heatmaps' ({len(theirs)} vs "
            f"{len(ours)}; e.g. {diff[:3]}, or duplicate ids)"
        )
    out = images.assign(image_id=images["image_id"].astype(str)).merge(
        shallow, on="image_id", how="left", validate="one_to_one"
    )
    bad = out[
        (out["patient_id"].astype(str) != out["shallow_patient"])
        | (out["pathology"].astype(str) != out["shallow_pathology"])
    ]
    if len(bad):
        raise ValueError(
            f"{bad['image_id'].iloc[0]}: patient or pathology differs between the enhanced "
            "and the patches manifests"
        )
    return out.drop(columns=["shallow_patient", "shallow_pathology"])


def load_shallow(path: str | os.PathLike) -> tuple[ShallowCNN, dict[str, Any]]:
    """Rebuilds the shallow CNN of a ``train_shallow`` checkpoint, in evaluation mode."""
    ckpt = load_checkpoint(path)
    return shallow_from_checkpoint(ckpt), ckpt


def shallow_images(ckpt: Mapping[str, Any], frame: pd.DataFrame, root: Path) -> ImageSet:
    """The down-sized full images of ``frame`` as the shallow CNN of ``ckpt`` reads them.

    The images are those the ``patches`` stage wrote (``root``-relative ``image_path``),
    normalised with the checkpoint's mean and standard deviation, exactly as
    ``train_shallow`` evaluated them.
    """
    norm = ckpt["config"]["input"]
    positive = ckpt["config"]["shallow"]["positive"]
    return ImageSet(
        frame,
        root,
        partial(label_cancerous, positive=positive),
        mean=norm["mean"],
        std=norm["std"],
        desc="load shallow",
    )


def shallow_probabilities(model: torch.nn.Module, images: ImageSet) -> np.ndarray:
    """The shallow CNN's cancerous probabilities of ``images`` (see :func:`shallow_images`)."""
    with torch.no_grad():
        return predict_proba(model, images)
