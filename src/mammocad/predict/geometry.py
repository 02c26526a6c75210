"""Pixel geometry of a prediction: heatmap stripes within a budget, region crops to scale."""

from __future__ import annotations

from mammocad.localize import STRIDE_ALIGN


def stripe_pixels(rows: int, cols: int, budget: int | None, halo: int) -> int | None:
    """The ``tile_pixels`` of :func:`mammocad.localize.compute_heatmap` for a budget.

    The fewest stripes of equal height (multiples of :data:`STRIDE_ALIGN`) whose rows,
    with ``halo`` rows of context on each inner side, fit in ``budget`` pixels: fewer
    stripes recompute fewer context rows, and equal heights keep the largest one, which
    sets the memory, small.

    Returns:
        The pixels of one stripe without its context (one stripe height times ``cols``),
        or None for one pass over the whole image (it fits, or no budget).
    """
    if not budget or rows * cols <= budget:
        return None
    n = 2
    while True:
        step = -(-rows // (n * STRIDE_ALIGN)) * STRIDE_ALIGN
        context = halo * (2 if n > 2 else 1)
        if (step + context) * cols <= budget or step == STRIDE_ALIGN:
            return step * cols
        n += 1


def _widen(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """``[lo, hi)`` widened to at least ``side`` about its centre, inside ``[0, limit)``."""
    side = min(max(hi - lo, side), limit)
    start = int(round((lo + hi - side) / 2))
    start = min(max(start, 0), limit - side)
    return start, start + side
