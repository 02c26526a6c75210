"""OpenCV's pixels, the same on every x86-64 CPU.

OpenCV chooses at run time among code paths compiled for several instruction sets (SSE4.1,
AVX, AVX2, AVX-512 in the ``opencv-python`` wheels) and Intel IPP routines. These
paths round floating-point sums differently, so a Gaussian blur, a resize or a warp can
give pixels one grey level apart on two machines. The synthetic dataset, the patches and
the augmented copies then differ from the first stage on, and so does everything trained on
them.

:func:`portable_opencv` keeps OpenCV on the baseline code compiled into the wheel (SSE3
on x86-64, the same on every such CPU) and turns IPP off. On two CPU cores this cost
nothing in the data stages (they ran slightly faster).
"""

from __future__ import annotations

import logging

import cv2

log = logging.getLogger(__name__)


def portable_opencv() -> None:
    """Restricts OpenCV to its baseline code paths, without IPP, in this process and in
    the processes it forks from now on. Call it before any image work."""
    cv2.setUseOptimized(False)
    log.debug("OpenCV on its baseline code paths (IPP off): %s", not cv2.useOptimized())
