"""The data stages' pixels do not depend on the code paths OpenCV picks for the CPU.

Each child process renders one synthetic patient (blurs, resizes, remaps), turns a crop
of its first mammogram into a patch and a full image (the patches stage's resizes) and
augments the patch (warps), then prints a hash of all those pixels. ``OPENCV_CPU_DISABLE``
makes a child take the code paths of an older CPU, as another machine would, and
``OPENCV_IPP=disabled`` turns IPP off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import pytest

CHILD = textwrap.dedent(
    """
    import hashlib, sys, tempfile
    from pathlib import Path

    import numpy as np

    from mammocad.augment import AugmentConfig, augment_image, image_rng
    from mammocad.patches import PatchesConfig, make_full, make_patch
    from mammocad.portable import portable_opencv
    from mammocad.sources.synthetic.design import SyntheticConfig, _plan
    from mammocad.sources.synthetic.patient import _generate_patient
    from mammocad.sources.synthetic.view import _render_view
    from mammocad.sources.synthetic.lesions import _draw_lesion

    if sys.argv[1] == "portable":
        portable_opencv()
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SyntheticConfig(n_patients=4, image_height=384)
        task = next(t for t in _plan(cfg, 7, Path(tmp)) if any(b.lesions for b in t.breasts))
        rng = np.random.default_rng(3)
        breast = next(b for b in task.breasts if b.lesions)
        lesions = [_draw_lesion(rng, p, breast.kind, 384, 2, 0.05) for p in breast.lesions]
        image, _, _ = _render_view(rng, 384, 240, breast.side, "MLO", 2, lesions)
        digest.update(image.tobytes())
        patches = PatchesConfig()
        patch = make_patch(image[100:220, 40:150], patches)
        full, _ = make_full(image, patches)
        digest.update(patch.tobytes())
        digest.update(full.tobytes())
        augmented, _ = augment_image(patch, image_rng(5, "x"), AugmentConfig())
        digest.update(augmented.tobytes())
    print(digest.hexdigest())
    """
)

#: The instruction sets OpenCV's wheels dispatch to above their SSE3 baseline.
OLDER_CPU = "SSE4_1,SSE4_2,AVX,FP16,AVX2,AVX512_SKX"
#: OpenCV's number for AVX2 (``CV_CPU_AVX2``; the Python module does not name it).
CV_CPU_AVX2 = 11


def _pixels_hash(mode: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_portable_pixels_are_the_same_on_an_older_cpu_and_without_ipp():
    here = _pixels_hash("portable")
    assert _pixels_hash("portable", OPENCV_CPU_DISABLE=OLDER_CPU) == here
    assert _pixels_hash("portable", OPENCV_IPP="disabled") == here


@pytest.mark.skipif(
    not cv2.checkHardwareSupport(CV_CPU_AVX2),
    reason="this CPU has no AVX2 path for OpenCV to leave",
)
def test_without_it_the_pixels_follow_the_cpu():
    # The reason for the module: OpenCV's default paths give other pixels on another CPU.
    assert _pixels_hash("default") != _pixels_hash("default", OPENCV_CPU_DISABLE=OLDER_CPU)


def test_stages_and_the_command_line_use_it(tmp_path):
    import stages.common as common
    from mammocad.cli import main

    try:
        cv2.setUseOptimized(True)
        common.start("portable-test")
        assert not cv2.useOptimized()
        cv2.setUseOptimized(True)
        # a command that fails on its input (no training split here) after the set-up
        assert main(["cv", "mobilenet_v2", "--project", str(tmp_path)]) == 1
        assert not cv2.useOptimized()
    finally:
        cv2.setUseOptimized(True)
