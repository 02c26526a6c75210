"""The ``localize`` stage's work: :class:`LocalizeConfig` and :func:`localize_dataset`,
which computes each heatmap of the images once and scores, marks and draws it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from mammocad.io import atomic_dir, read_png, write_csv
from mammocad.localize.breast import breast_box, breast_mask
from mammocad.localize.cam import PATCH_INPUT
from mammocad.localize.heatmap import backbone_heatmap
from mammocad.localize.regions import candidate_hits, peak_candidates, top_regions
from mammocad.localize.render import render_overlay
from mammocad.localize.scoring import localization_metrics, score_heatmap

#: Another heatmap of a full image: ``(image_id, breast mask) -> map`` of the mask's shape.
OtherMap = Callable[[str, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LocalizeConfig:
    """The ``localize`` params section (paper §3: MobileNet localizes masses).

    Attributes:
        backbone: the fine-tuned backbone whose activation maps are used.
        method: ``cam`` (CAM where the head allows it, else Grad-CAM) or ``gradcam``.
        threshold: heatmap level above which a pixel counts as lesion (IoU, Dice, boxes).
        top_k: suspicious regions drawn per overlay.
        report_overlays: overlays copied to ``reports/localize/`` (the rest stay in
            ``data/localize/``), chosen by :func:`report_overlay_ids`.
        froc_candidates: candidate marks taken from each heatmap for the FROC curve
            (:func:`peak_candidates`); enough that the curve reaches 4 false positives per
            image.
    """

    backbone: str = "mobilenet_v1"
    method: Literal["cam", "gradcam"] = "cam"
    threshold: float = 0.5
    top_k: int = 3
    report_overlays: int = 4
    froc_candidates: int = 10

    def __post_init__(self) -> None:
        if self.froc_candidates < 1:
            raise ValueError(f"froc_candidates must be >= 1, got {self.froc_candidates}")


@dataclass
class LocalizeResult:
    """What :func:`localize_dataset` computes from the heatmaps, each computed once.

    Attributes:
        lesion_images: one record per image with lesion masks: pointing game, IoU, Dice
            and their chance levels (the rows :func:`localization_metrics` aggregates).
        metrics: those records aggregated, overall and per pathology.
        images: one row per image, normals included: ``image_id``, ``patient_id``,
            ``pathology``, ``abnormality_type``, ``n_lesions``, ``froc_eligible`` (a
            normal image, or every finding outlined), ``peak`` (the image score, see
            :class:`~mammocad.localize.heatmap.Heatmap`), ``heatmap_s`` (seconds of the
            heatmap computation).
        candidates: one row per candidate mark: ``image_id``, ``rank``, ``x``, ``y``,
            ``score``, ``x0``, ``y0``, ``x1``, ``y1`` and ``lesions`` (list of the lesion
            ids it detects; empty for a false positive).
        lesions: one row per outlined lesion: ``lesion_id`` (its ROI's image id),
            ``image_id``, ``pathology``, ``abnormality_type``.
    """

    lesion_images: pd.DataFrame
    metrics: dict[str, Any]
    images: pd.DataFrame
    candidates: pd.DataFrame
    lesions: pd.DataFrame


def report_overlay_ids(lesion_images: pd.DataFrame, n: int) -> list[str]:
    """The images whose overlays go into the report: hits and misses of each pathology.

    Groups the images with lesions by pointing-game outcome and pathology (hits first,
    malignant before benign), then takes one image from each group in turn, the first by
    id in each, until ``n`` are taken, so the report shows where the map works and where it
    does not rather than whichever cases sort first.

    Args:
        lesion_images: ``LocalizeResult.lesion_images`` (``image_id``, ``pathology``,
            ``hit``).
        n: how many to take; fewer if there are fewer images.
    """
    frame = lesion_images.sort_values("image_id")
    groups = [
        list(group["image_id"])
        for _, group in sorted(
            frame.groupby(["hit", "pathology"], sort=False),
            key=lambda item: (not item[0][0], str(item[0][1]) != "MALIGNANT", str(item[0][1])),
        )
    ]
    picked: list[str] = []
    while len(picked) < n and any(groups):
        for group in groups:
            if group and len(picked) < n:
                picked.append(group.pop(0))
    return picked


def localize_dataset(
    model: nn.Module,
    backbone: str,
    patch_px: float,
    mean: Sequence[float],
    std: Sequence[float],
    enhanced_dir: Path,
    image_ids: Iterable[str],
    out_dir: Path,
    cfg: LocalizeConfig,
    input_size: int = PATCH_INPUT,
    other_maps: Mapping[str, OtherMap] | None = None,
) -> LocalizeResult:
    """Heatmaps of every full mammogram, scored against lesion masks (paper §3, Fig. 1).

    Each heatmap is computed once, on the image cropped to the breast's bounding box
    widened by half a training patch (:func:`breast_box`; zero outside it, as outside the
    breast), and used four ways: lesion scores (pointing game, IoU, Dice) on images with
    lesion masks, the image score (its maximum inside the breast), FROC candidates
    (:func:`peak_candidates`, suppression half-side ``patch_px / 2``, matched by
    :func:`candidate_hits`) and an overlay.

    Args:
        model: the fine-tuned patch network.
        backbone: its registry name.
        patch_px: training patch scale in full-image pixels.
        mean: input normalisation mean of the network.
        std: input normalisation standard deviation.
        enhanced_dir: an ``enhance`` output folder (images and masks, manifest).
        image_ids: the full images to localize in (e.g. the test split's), normals
            included; every one must be in the manifest.
        out_dir: folder to create with one overlay PNG per image, ``images.csv`` and
            ``candidates.csv``.
        cfg: threshold, method, regions and candidates.
        input_size: side of the patches the network was trained on (``patches.image_size``
            of its run): a full image is rescaled by ``input_size / patch_px``.
        other_maps: further heatmaps scored against the same lesion masks (pointing game,
            IoU, Dice): name → function of ``(image_id, breast mask)`` giving a map of the
            image's shape (e.g. the shallow CNN's, :mod:`~mammocad.localize.shallow`).
            Their aggregates go to ``metrics[name]``, their hits to ``hit_<name>`` columns
            of ``lesion_images``.

    Returns:
        The :class:`LocalizeResult`.

    Raises:
        ValueError: for image ids missing from the manifest, or none with a lesion mask.
    """
    manifest = pd.read_csv(Path(enhanced_dir) / "manifest.csv", keep_default_na=False)
    wanted = set(image_ids)
    full = manifest[(manifest["kind"] == "full") & manifest["image_id"].isin(wanted)]
    missing = sorted(wanted - set(full["image_id"]))
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) to localize are not full images of the enhanced "
            f"manifest, e.g. {missing[:3]}"
        )
    rois = manifest[manifest["kind"] == "roi"]
    unoutlined = set(rois.loc[rois["mask_path"] == "", "full_image_id"])
    rois = rois[rois["mask_path"] != ""].sort_values("image_id")
    rois_of = {
        key: list(zip(group["image_id"], group["mask_path"], strict=True))
        for key, group in rois.groupby("full_image_id")
    }
    full = full.sort_values("image_id")
    if not full["image_id"].isin(rois_of).any():
        raise ValueError("no full mammogram with a lesion mask among the images to localize")
    radius = float(patch_px) / 2
    records, rows, cands = [], [], []
    others: dict[str, list[dict[str, Any]]] = {}
    with atomic_dir(out_dir) as tmp:
        for row in tqdm(full.to_dict("records"), desc="localize", unit="img", disable=None):
            image_id = row["image_id"]
            image = read_png(Path(enhanced_dir) / row["image_path"])
            lesions = {
                rid: read_png(Path(enhanced_dir) / rel) > 0
                for rid, rel in rois_of.get(image_id, [])
            }
            breast = breast_mask(image)
            t0 = time.perf_counter()
            box = breast_box(breast, margin=round(radius))
            crop = backbone_heatmap(
                model,
                backbone,
                image[box],
                patch_px,
                mean,
                std,
                cfg.method,
                input_size=input_size,
                breast=breast[box],
            )
            heat = dataclasses.replace(crop, values=np.zeros(image.shape, np.float32))
            heat.values[box] = crop.values
            seconds = time.perf_counter() - t0
            union = None
            if lesions:
                union = np.logical_or.reduce(list(lesions.values()))
                record = score_heatmap(heat.values, union, breast, cfg.threshold)
                record.update(
                    image_id=image_id,
                    pathology=row["pathology"],
                    abnormality_type=row["abnormality_type"],
                )
                for name, other in (other_maps or {}).items():
                    theirs = score_heatmap(other(image_id, breast), union, breast, cfg.threshold)
                    record[f"hit_{name}"] = theirs["hit"]
                    others.setdefault(name, []).append({**theirs, "pathology": row["pathology"]})
                records.append(record)
            # candidate scores on the image score's scale (1 for CAM; Grad-CAM's values are
            # stretched per image)
            top = float(heat.values.max())
            scale = heat.peak / top if top > 0 else 1.0
            found = peak_candidates(heat.values, cfg.froc_candidates, radius, scale)
            for rank, (c, hit) in enumerate(
                zip(found, candidate_hits(found, lesions), strict=True), start=1
            ):
                x0, y0, x1, y1 = c["bbox"]
                cands.append(
                    dict(image_id=image_id, rank=rank, x=c["x"], y=c["y"], score=c["score"],
                         x0=x0, y0=y0, x1=x1, y1=y1, lesions=hit)
                )  # fmt: skip
            normal = row["pathology"] == "NORMAL" and image_id not in unoutlined
            rows.append({
                "image_id": image_id,
                "patient_id": row["patient_id"],
                "pathology": row["pathology"],
                "abnormality_type": row["abnormality_type"],
                "n_lesions": len(lesions),
                "froc_eligible": normal or (bool(lesions) and image_id not in unoutlined),
                "peak": heat.peak,
                "heatmap_s": seconds,
            })  # fmt: skip
            regions = top_regions(heat.values, k=cfg.top_k, threshold=cfg.threshold)
            render_overlay(image, heat.values, union, regions, tmp / f"{image_id}.png")
        frame = pd.DataFrame(records)
        images = pd.DataFrame(rows)
        candidates = pd.DataFrame(
            cands,
            columns=["image_id", "rank", "x", "y", "score", "x0", "y0", "x1", "y1", "lesions"],
        )
        scored = frame.drop(columns=["pathology", "abnormality_type"])
        # the seconds stay out of the folder's files: a rerun must give the same bytes
        untimed = images.drop(columns=["heatmap_s"])
        write_csv(tmp / "images.csv", untimed.merge(scored, on="image_id", how="left"))
        write_csv(
            tmp / "candidates.csv",
            candidates.assign(lesions=candidates["lesions"].map(";".join)),
        )
    metrics = localization_metrics(records)
    metrics.update({name: localization_metrics(found) for name, found in others.items()})
    metrics.update(
        backbone=backbone,
        method=cfg.method,
        threshold=cfg.threshold,
        patch_px=patch_px,
        n_images=len(records),
    )
    lesion_rows = rois[rois["full_image_id"].isin(set(full["image_id"]))]
    lesion_frame = pd.DataFrame({
        "lesion_id": lesion_rows["image_id"].to_numpy(),
        "image_id": lesion_rows["full_image_id"].to_numpy(),
        "pathology": lesion_rows["pathology"].to_numpy(),
        "abnormality_type": lesion_rows["abnormality_type"].to_numpy(),
    })  # fmt: skip
    return LocalizeResult(frame, metrics, images, candidates, lesion_frame)
