"""Augmentation ops are exact where they should be, seeded, and touch training data only."""

import numpy as np
import pandas as pd
import pytest

from mammocad.augment import (
    AugmentConfig,
    augment_dataset,
    augment_image,
    image_rng,
    scale_image,
    shear_image,
)
from mammocad.io import read_png, write_png

IMG = np.arange(16, dtype=np.uint16).reshape(4, 4) * 100


def _only(op, **kw):
    return AugmentConfig(ops=(op,), **kw)


def test_hflip_and_vflip_exact():
    out, what = augment_image(IMG, np.random.default_rng(0), _only("hflip", hflip=1.0))
    np.testing.assert_array_equal(out, IMG[:, ::-1])
    assert what == "hflip"
    out, _ = augment_image(IMG, np.random.default_rng(0), _only("vflip", vflip=1.0))
    np.testing.assert_array_equal(out, IMG[::-1])
    out, what = augment_image(IMG, np.random.default_rng(0), _only("hflip", hflip=0.0))
    np.testing.assert_array_equal(out, IMG)
    assert what == ""


def test_rotations_are_right_angles():
    seen = set()
    for s in range(30):
        out, what = augment_image(IMG, np.random.default_rng(s), _only("rotate90", rotate90=1.0))
        k = int(what[3:]) // 90
        np.testing.assert_array_equal(out, np.rot90(IMG, k))
        seen.add(k)
    assert seen == {1, 2, 3}


def test_non_square_images_only_rotate_180():
    img = np.arange(6, dtype=np.uint16).reshape(2, 3)
    out, what = augment_image(img, np.random.default_rng(0), _only("rotate90", rotate90=1.0))
    assert what == "rot180"
    np.testing.assert_array_equal(out, img[::-1, ::-1])


def test_identity_affines():
    cfg = AugmentConfig()
    np.testing.assert_array_equal(shear_image(IMG, 0.0, cfg), IMG)
    np.testing.assert_array_equal(scale_image(IMG, 1.0, 1.0, cfg), IMG)


def test_shear_moves_rows_by_factor():
    img = np.zeros((5, 5), np.uint16)
    img[:, 2] = 1000  # a vertical line through the centre column
    out = shear_image(img, 0.5, AugmentConfig(border="constant"))
    # x' = x + 0.5 (y - 2): the top row's line moves 1 px left, the bottom row's 1 px right
    assert out[0].argmax() == 1 and out[4].argmax() == 3 and out[2].argmax() == 2


def test_zoom_in_magnifies_about_centre():
    img = np.zeros((9, 9), np.uint16)
    img[3:6, 3:6] = 1000
    out = scale_image(img, 2.0, 2.0, AugmentConfig(border="constant"))
    assert (out > 0).sum() > 2 * (img > 0).sum()
    assert out[4, 4] == 1000


def test_rng_depends_on_seed_and_image_only():
    a = image_rng(5, "x").random(3)
    np.testing.assert_array_equal(a, image_rng(5, "x").random(3))
    assert not np.array_equal(a, image_rng(5, "y").random(3))
    assert not np.array_equal(a, image_rng(6, "x").random(3))


def test_unknown_op_is_named():
    with pytest.raises(ValueError, match="unknown op 'blur'"):
        AugmentConfig(ops=("blur",))


def _split_set(tmp_path):
    rows = []
    for i, split in enumerate(["train", "train", "val", "test"]):
        write_png(tmp_path / f"patches/roi/r{i}.png", (IMG + i).astype(np.uint16))
        rows.append(
            {
                "image_id": f"r{i}",
                "kind": "roi",
                "patient_id": f"P{i}",
                "split": split,
                "image_path": f"roi/r{i}.png",
                "pathology": "BENIGN",
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_augment_dataset_train_only_and_deterministic(tmp_path, workers):
    frame = _split_set(tmp_path)
    cfg = AugmentConfig(copies=3)
    out = augment_dataset(frame, tmp_path / "patches", tmp_path / "aug", cfg, 11, workers)
    assert set(out["source_image_id"]) == {"r0", "r1"}
    assert len(out) == 2 * (1 + 3)
    assert sorted(p.name for p in (tmp_path / "aug/roi").iterdir()) == sorted(
        [f"r{i}.png" for i in (0, 1)] + [f"r{i}__aug{k}.png" for i in (0, 1) for k in (1, 2, 3)]
    )
    np.testing.assert_array_equal(read_png(tmp_path / "aug/roi/r0.png"), IMG)
    again = augment_dataset(frame, tmp_path / "patches", tmp_path / "aug2", cfg, 11, 1)
    for rel in out["image_path"]:
        np.testing.assert_array_equal(
            read_png(tmp_path / "aug" / rel), read_png(tmp_path / "aug2" / rel)
        )
    assert list(out["ops"]) == list(again["ops"])
