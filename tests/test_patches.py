"""Value tables for ROI selection and resizing (paper §3.2)."""

import numpy as np
import pandas as pd
import pytest

from mammocad.io import read_png, write_png
from mammocad.patches import (
    PatchesConfig,
    aspect_ok,
    aspect_ratio,
    build_patches,
    chest_wall_on_right,
    drop_reason,
    make_full,
    pad_to_square,
    resize,
)


@pytest.mark.parametrize(
    ("w", "h", "kept"),
    [(40, 100, True), (150, 100, True), (39, 100, False), (151, 100, False), (100, 100, True)],
)
def test_aspect_bounds_are_inclusive(w, h, kept):
    assert aspect_ok(w, h, 0.4, 1.5) is kept


def test_aspect_ratio_is_width_over_height():
    assert aspect_ratio(30, 60) == 0.5
    with pytest.raises(ValueError):
        aspect_ratio(0, 5)


def test_downsampling_uses_area_means():
    img = np.array([[0, 0, 4, 4], [0, 0, 4, 4], [8, 8, 12, 12], [8, 8, 12, 12]], np.uint16)
    np.testing.assert_array_equal(resize(img, 2, 2), [[0, 4], [8, 12]])
    img = np.array([[0, 2, 4, 6]] * 4, np.uint16)
    np.testing.assert_array_equal(resize(img, 2, 2), [[1, 5], [1, 5]])


def test_each_axis_gets_its_own_interpolation():
    # width shrinks (area: pair means 1 and 15), height grows (cubic of constant columns)
    img = np.array([[0, 2, 10, 20]] * 2, np.uint16)
    np.testing.assert_array_equal(resize(img, 4, 2), [[1, 15]] * 4)


def test_upsampling_is_cubic():
    import cv2

    img = np.array([[0, 1000, 0], [1000, 5000, 1000], [0, 1000, 0]], np.uint16)
    # axis by axis: columns first, then rows
    expected = cv2.resize(
        cv2.resize(img, (7, 3), interpolation=cv2.INTER_CUBIC),
        (7, 7),
        interpolation=cv2.INTER_CUBIC,
    )
    np.testing.assert_array_equal(resize(img, 7, 7), expected)
    linear = cv2.resize(img, (7, 7), interpolation=cv2.INTER_LINEAR)
    assert not np.array_equal(resize(img, 7, 7), linear)


def test_pad_to_square_centres():
    out = pad_to_square(np.ones((2, 4), np.uint16))
    np.testing.assert_array_equal(out, [[0] * 4, [1] * 4, [1] * 4, [0] * 4])


def test_full_images_are_flipped_chest_wall_left():
    img = np.zeros((8, 8), np.uint16)
    img[:, 6:] = 1000
    assert chest_wall_on_right(img)
    out, flipped = make_full(img, PatchesConfig(full_height=8, full_width=8))
    assert flipped
    assert out[:, :2].min() == 1000 and out[:, 2:].max() == 0
    out, flipped = make_full(img, PatchesConfig(full_height=8, full_width=8, orient_full=False))
    assert not flipped


def test_drop_reasons():
    cfg = PatchesConfig(abnormality_types=("mass",))
    base = {"abnormality_type": "mass", "width": 100, "height": 100}
    assert drop_reason(base, cfg) is None
    assert "below min_aspect" in drop_reason({**base, "width": 30}, cfg)
    assert "above max_aspect" in drop_reason({**base, "width": 200}, cfg)
    assert "not in patches.abnormality_types" in drop_reason(
        {**base, "abnormality_type": "calcification"}, cfg
    )


def test_config_rejects_inverted_bounds():
    with pytest.raises(ValueError, match="min_aspect"):
        PatchesConfig(min_aspect=2.0, max_aspect=1.0)


def test_build_patches_writes_sizes_and_reasons(tmp_path):
    src = tmp_path / "enhanced"
    rows = []
    write_png(src / "full/a.png", np.full((64, 40), 500, np.uint16))
    rows.append(
        {
            "image_id": "a",
            "kind": "full",
            "patient_id": "P1",
            "pathology": "BENIGN",
            "abnormality_type": "mass",
            "image_path": "full/a.png",
            "mask_path": "",
            "height": 64,
            "width": 40,
        }
    )
    for rid, (h, w) in {"a_1": (20, 20), "a_2": (10, 30)}.items():
        write_png(src / f"roi/{rid}_crop.png", np.full((h, w), 7, np.uint16))
        rows.append(
            {
                "image_id": rid,
                "kind": "roi",
                "patient_id": "P1",
                "pathology": "BENIGN",
                "abnormality_type": "mass",
                "image_path": f"roi/{rid}_crop.png",
                "mask_path": "",
                "height": h,
                "width": w,
            }
        )
    pd.DataFrame(rows).to_csv(src / "manifest.csv", index=False)
    cfg = PatchesConfig(image_size=16, full_height=32, full_width=20)
    kept, dropped, metrics = build_patches(src, tmp_path / "patches", cfg, workers=1)
    assert list(kept["image_id"]) == ["a", "a_1"]
    assert list(dropped["image_id"]) == ["a_2"]
    assert read_png(tmp_path / "patches/roi/a_1.png").shape == (16, 16)
    assert read_png(tmp_path / "patches/full/a.png").shape == (32, 20)
    assert metrics["roi_kept"] == 1 and metrics["roi_dropped_by_reason"] == {"above_max_aspect": 1}
    assert kept.loc[kept["image_id"] == "a_1", "source_width"].item() == 20
