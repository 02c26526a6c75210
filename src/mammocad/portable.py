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

IPP needs care: ``cv2.setUseOptimized(False)`` turns it off for the calling thread only.
OpenCV's own worker threads (it splits a large resize or blur into stripes) and any other
thread read the process-wide setting, which OpenCV takes from ``OPENCV_IPP`` the first
time an operation asks for it. Left at that, a stripe computed on a worker thread would go
through IPP and one computed on the calling thread would not, so the pixels would depend
on scheduling. :func:`portable_opencv` therefore sets ``OPENCV_IPP=disabled`` as well and
makes OpenCV read it at once (without its warning line on stderr). Where OpenCV had already
read it (some OpenCV operation ran earlier in the process, as in a program that calls the
command line's ``main``), that is too late: OpenCV's work is then kept on the calling
thread (``cv2.setNumThreads(1)``), with a warning, but threads started afterwards, and the
processes they fork, still use IPP. The stages and the command line call it first thing.

Only OpenCV is covered. NumPy also picks code by CPU for some functions (``exp``, ``sin``,
``cos`` have AVX-512 versions), which the data stages call too.
"""

from __future__ import annotations

import logging
import os
import threading

import cv2

log = logging.getLogger(__name__)


def _ipp_in_a_new_thread() -> bool:
    """Whether a thread that never set IPP itself (as OpenCV's workers) would use it."""
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(bool(cv2.ipp.useIPP())))
    thread.start()
    thread.join()
    return seen[0]


def portable_opencv() -> bool:
    """Restricts OpenCV to its baseline code paths, without IPP, in this process and in
    the processes it starts from now on. Call it before any image work.

    Returns:
        ``True`` if OpenCV keeps its worker threads; ``False`` where IPP had already been
        switched on process-wide, so that OpenCV now works on the calling thread only.
    """
    os.environ["OPENCV_IPP"] = "disabled"
    # OpenCV reads OPENCV_IPP here, and warns on stderr that it disables IPP: that is what
    # is asked for, so the warning is silenced.
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        cv2.setUseOptimized(False)
        ipp_elsewhere = _ipp_in_a_new_thread()
    finally:
        cv2.utils.logging.setLogLevel(level)
    if ipp_elsewhere:
        cv2.setNumThreads(1)
        log.warning(
            "OpenCV ran before portable_opencv() and keeps IPP for new threads: its work now "
            "stays on this thread, but threads started from here on may compute other pixels"
        )
        return False
    return True
