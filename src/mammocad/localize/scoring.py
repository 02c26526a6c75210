"""Heatmaps scored against lesion masks: pointing game, IoU and Dice, their chance levels,
and the per-image records aggregated overall and per pathology.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def _check_pair(heatmap: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from mask shape {mask.shape}")
    mask = np.asarray(mask).astype(bool)
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    return mask


def pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """Whether the heatmap's maximum lies inside the lesion (Zhang et al. 2016).

    Ties go to the first maximum in row-major order, so a constant map points at the
    top-left pixel.

    Raises:
        ValueError: for shapes that differ or an empty mask.
    """
    mask = _check_pair(heatmap, mask)
    return bool(mask.flat[int(np.argmax(heatmap))])


def overlap(heatmap: np.ndarray, mask: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """IoU and Dice of the region ``heatmap >= threshold`` against the lesion mask.

    Returns:
        ``(iou, dice)``; both 0 when no pixel reaches the threshold.

    Raises:
        ValueError: for shapes that differ or an empty mask.
    """
    mask = _check_pair(heatmap, mask)
    pred = heatmap >= threshold
    inter = int(np.count_nonzero(pred & mask))
    p, m = int(np.count_nonzero(pred)), int(np.count_nonzero(mask))
    return inter / (p + m - inter), 2 * inter / (p + m)


def chance_levels(
    mask: np.ndarray, breast_mask: np.ndarray, predicted_area: float
) -> dict[str, float]:
    """Scores a heatmap would get by chance, to read the real ones against.

    * Pointing game: a maximum placed uniformly at random in the breast hits the lesion
      with probability ``|lesion ∩ breast| / |breast|``.
    * IoU and Dice: a predicted region ``B`` of ``predicted_area`` pixels placed at random
      in the breast covers each breast pixel with probability ``|B| / |breast|``, so its
      expected intersection with the lesion ``A`` is ``E[I] = |A||B| / |breast|``; the
      chance levels are ``Dice = 2 E[I] / (|A| + |B|)`` and
      ``IoU = E[I] / (|A| + |B| − E[I])`` (the scores at the expected intersection, a
      first-order approximation of the expected scores).

    Args:
        mask: lesion mask.
        breast_mask: breast mask of the same shape.
        predicted_area: pixels of the predicted region (e.g. ``heatmap >= threshold``).

    Returns:
        ``{"pointing", "iou", "dice"}``.

    Raises:
        ValueError: for shapes that differ, an empty lesion mask or an empty breast.
    """
    mask = np.asarray(mask).astype(bool)
    breast = np.asarray(breast_mask).astype(bool)
    if mask.shape != breast.shape:
        raise ValueError(f"mask shape {mask.shape} differs from breast shape {breast.shape}")
    area_b = int(np.count_nonzero(breast))
    area_a = int(np.count_nonzero(mask & breast))
    if area_b == 0:
        raise ValueError("the breast mask is empty")
    if not mask.any():
        raise ValueError("the lesion mask is empty")
    pred = min(max(float(predicted_area), 0.0), float(area_b))
    inter = area_a * pred / area_b
    union = area_a + pred - inter
    return {
        "pointing": area_a / area_b,
        "iou": inter / union if union > 0 else 0.0,
        "dice": 2 * inter / (area_a + pred) if area_a + pred > 0 else 0.0,
    }


def score_heatmap(
    heatmap: np.ndarray, mask: np.ndarray, breast: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """One image's localization record: pointing game, IoU, Dice and their chance levels.

    The result, with a ``pathology`` key added, is what :func:`localization_metrics`
    aggregates.
    """
    mask = _check_pair(heatmap, mask)
    iou, dice = overlap(heatmap, mask, threshold)
    predicted = int(np.count_nonzero(heatmap >= threshold))
    chance = chance_levels(mask, breast, predicted)
    return {
        "hit": pointing_game(heatmap, mask),
        "iou": iou,
        "dice": dice,
        "chance_hit": chance["pointing"],
        "chance_iou": chance["iou"],
        "chance_dice": chance["dice"],
        "lesion_area": int(np.count_nonzero(mask)),
        "predicted_area": predicted,
    }


_AGG = (
    ("hit_rate", "hit"),
    ("hit_rate_chance", "chance_hit"),
    ("mean_iou", "iou"),
    ("mean_iou_chance", "chance_iou"),
    ("mean_dice", "dice"),
    ("mean_dice_chance", "chance_dice"),
)


def _aggregate(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(records)}
    for name, key in _AGG:
        out[name] = float(np.mean([float(r[key]) for r in records])) if records else None
    return out


def localization_metrics(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Hit rate, mean IoU and mean Dice with their chance levels, overall and per pathology.

    Args:
        records: per-lesion records as :func:`score_heatmap` returns them, each with a
            ``pathology`` key (``BENIGN``/``MALIGNANT``).

    Returns:
        ``{"n", "hit_rate", "hit_rate_chance", "mean_iou", "mean_iou_chance", "mean_dice",
        "mean_dice_chance", "by_pathology": {pathology: same keys}}``; means are ``None``
        for no records.
    """
    records = list(records)
    out = _aggregate(records)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get("pathology", "UNKNOWN")), []).append(r)
    out["by_pathology"] = {k: _aggregate(v) for k, v in sorted(groups.items())}
    return out
