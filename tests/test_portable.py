"""The data stages' pixels do not depend on the code paths OpenCV picks for the CPU.

Each child process renders a synthetic mammogram (blurs, resizes, remaps), turns a crop of
it into a patch and the whole into a down-sized film (the patches stage's resizes),
augments the patch (warps) and down-sizes a film of CBIS-DDSM's size (a resize OpenCV
splits among its worker threads), then prints a hash of all those pixels, computed once on
its main thread and once on another Python thread (which, like OpenCV's own workers, never
set IPP itself). ``OPENCV_CPU_DISABLE`` makes a child take the code paths of an older CPU,
as another machine would, and ``OPENCV_IPP=disabled`` turns IPP off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import pytest

CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, tempfile, threading
    from pathlib import Path

    import cv2
    import numpy as np

    from mammocad.augment import AugmentConfig, augment_image, image_rng
    from mammocad.patches import PatchesConfig, make_full, make_patch, resize
    from mammocad.portable import portable_opencv
    from mammocad.sources.synthetic.design import SyntheticConfig, _plan
    from mammocad.sources.synthetic.lesions import _draw_lesion
    from mammocad.sources.synthetic.view import _render_view

    def pixels():
        digest = hashlib.sha256()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = SyntheticConfig(n_patients=4, image_height=384)
            tasks = _plan(cfg, 7, Path(tmp))
            task = next(t for t in tasks if any(b.lesions for b in t.breasts))
            rng = np.random.default_rng(3)
            breast = next(b for b in task.breasts if b.lesions)
            lesions = [_draw_lesion(rng, p, breast.kind, 384, 2, 0.05) for p in breast.lesions]
            image, _, _ = _render_view(rng, 384, 240, breast.side, "MLO", 2, lesions)
            patches = PatchesConfig()
            patch = make_patch(image[100:220, 40:150], patches)
            full, _ = make_full(image, patches)
            augmented, _ = augment_image(patch, image_rng(5, "x"), AugmentConfig())
            # a film at CBIS-DDSM's size: OpenCV splits this resize among its threads
            film = np.random.default_rng(0).integers(0, 65535, (4600, 2800), dtype=np.uint16)
            down = resize(film, 256, 160)
            for array in (image, patch, full, augmented, down):
                digest.update(array.tobytes())
        return digest.hexdigest()

    mode = sys.argv[1]
    if mode == "late":  # an OpenCV operation runs before the call
        cv2.resize(np.zeros((64, 64), np.float32), (32, 32))
    kept_threads = portable_opencv() if mode in ("portable", "late") else None
    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(pixels()))
    thread.start()
    thread.join()
    print(json.dumps({
        "main": pixels(),
        "thread": other[0],
        "kept_threads": kept_threads,
        "opencv_threads": cv2.getNumThreads(),
    }))
    """
)

#: The instruction sets OpenCV's wheels dispatch to above their SSE3 baseline.
OLDER_CPU = "SSE4_1,SSE4_2,AVX,FP16,AVX2,AVX512_SKX"
#: OpenCV's number for AVX2 (``CV_CPU_AVX2``; the Python module does not name it).
CV_CPU_AVX2 = 11


def _clean_environ(**env: str) -> dict[str, str]:
    """This process's environment without OpenCV's settings (an in-process command line may
    have set ``OPENCV_IPP``), plus ``env``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    environ.update(env)
    return environ


def _pixels(mode: str, **env: str) -> dict:
    environ = _clean_environ(**env)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_portable_pixels_are_the_same_on_any_thread_on_an_older_cpu_and_without_ipp():
    here = _pixels("portable")
    assert here["kept_threads"] is True
    # OpenCV's worker threads and other threads compute as the calling thread does
    assert here["thread"] == here["main"]
    for env in ({"OPENCV_CPU_DISABLE": OLDER_CPU}, {"OPENCV_IPP": "disabled"}):
        assert _pixels("portable", **env)["main"] == here["main"], env


def test_a_late_call_keeps_opencv_on_the_calling_thread():
    late = _pixels("late")
    assert late["kept_threads"] is False
    assert late["opencv_threads"] == 1
    assert late["main"] == _pixels("portable")["main"]


@pytest.mark.skipif(
    not cv2.checkHardwareSupport(CV_CPU_AVX2),
    reason="this CPU has no AVX2 path for OpenCV to leave",
)
def test_without_it_the_pixels_follow_the_cpu():
    # The reason for the module: OpenCV's default paths give other pixels on another CPU
    # (with the pinned opencv-python-headless; another version may differ elsewhere).
    default = _pixels("default")
    assert default["main"] != _pixels("default", OPENCV_CPU_DISABLE=OLDER_CPU)["main"]


SET_UP = textwrap.dedent(
    """
    import json, os, sys, threading
    import cv2

    if sys.argv[1] == "stage":
        import stages.common
        stages.common.start("portable-test")
    else:
        from mammocad.cli import main
        # a command that fails on its input (no training split here), after the set-up
        assert main(["cv", "mobilenet_v2", "--project", sys.argv[2]]) == 1
    seen = []
    thread = threading.Thread(target=lambda: seen.append(cv2.ipp.useIPP()))
    thread.start()
    thread.join()
    print(json.dumps({
        "optimized": cv2.useOptimized(),
        "ipp_env": os.environ.get("OPENCV_IPP"),
        "ipp_new_thread": seen[0],
        "threads": cv2.getNumThreads(),
    }))
    """
)


@pytest.mark.parametrize("entry", ["stage", "cli"])
def test_stages_and_the_command_line_use_it(entry, tmp_path):
    environ = _clean_environ()
    done = subprocess.run(
        [sys.executable, "-c", SET_UP, entry, str(tmp_path)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["optimized"] is False
    assert state["ipp_env"] == "disabled"
    assert state["ipp_new_thread"] is False
    # set up before any OpenCV work, so OpenCV keeps its worker threads (as many as a
    # fresh process has: this one may have run the command line in-process already)
    fresh = subprocess.run(
        [sys.executable, "-c", "import cv2; print(cv2.getNumThreads())"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert state["threads"] == int(fresh.stdout)
