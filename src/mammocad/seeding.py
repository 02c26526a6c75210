"""One call that seeds every random number generator a stage may touch (house style 4)."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int) -> None:
    """Seeds Python's ``random``, NumPy's global generator and, if imported, PyTorch.

    Library code draws from explicit ``np.random.Generator`` objects; this call covers the
    global generators that third-party code falls back on.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
