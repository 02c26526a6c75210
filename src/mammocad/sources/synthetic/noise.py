"""Small random helpers of the synthetic images: weighted choices, smooth noise fields and
curves, and a sigmoid for soft edges.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def _choice(rng: np.random.Generator, table: tuple[tuple[Any, float], ...]) -> Any:
    values = [v for v, _ in table]
    weights = np.array([w for _, w in table], dtype=np.float64)
    return values[int(rng.choice(len(values), p=weights / weights.sum()))]


def _unit_noise(noise: np.ndarray) -> np.ndarray:
    """Scales a noise field to zero mean and unit standard deviation."""
    noise -= noise.mean()
    noise /= max(float(noise.std()), 1e-6)
    return noise


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.standard_normal(shape, dtype=np.float32)
    return _unit_noise(cv2.GaussianBlur(noise, (0, 0), sigmaX=max(sigma, 0.3)))


def _smooth_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Smooth unit-variance 1-D noise, for wobbly outlines."""
    return _blurred_noise(rng, (n, 1), sigma)[:, 0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)
