"""Value tables for the enhancement filters (paper §3.2)."""

import numpy as np
import pandas as pd
import pytest

from mammocad.enhance import (
    AdaptiveMeanConfig,
    ClaheConfig,
    EnhanceConfig,
    adaptive_mean,
    apply_chain,
    clahe,
    crop_tile_grid,
    effective_clip_count,
    enhance_dataset,
    median,
    validate,
)
from mammocad.io import read_png, write_png


def test_median_removes_impulse_16bit():
    img = np.full((5, 5), 1000, np.uint16)
    img[2, 2] = 65535
    img[0, 0] = 0
    out = median(img, 3)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.full((5, 5), 1000, np.uint16))


def test_median_value_table_step_edge():
    img = np.array([[0, 0, 9, 9]] * 4, np.uint16)
    # a vertical step edge survives a median filter unchanged
    np.testing.assert_array_equal(median(img, 3), img)
    img[1, 1] = 9  # isolated outlier inside the dark side
    np.testing.assert_array_equal(median(img, 3)[1], [0, 0, 9, 9])


@pytest.mark.parametrize("kernel", [7, 4])
def test_median_rejects_unsupported_16bit_kernel(kernel):
    with pytest.raises(ValueError, match="3 or 5"):
        median(np.zeros((8, 8), np.uint16), kernel)


def test_median_8bit_takes_larger_kernels():
    img = np.zeros((9, 9), np.uint8)
    img[4, 4] = 255
    assert median(img, 7).max() == 0


def test_clahe_two_level_image_equals_histogram_equalisation():
    # One tile and no effective clipping reduce CLAHE to global histogram equalisation:
    # level 10 holds half the pixels → cdf 0.5 → 128; level 200 → cdf 1 → 255.
    img = np.array([[10] * 4 + [200] * 4] * 8, np.uint8)
    out = clahe(img, clip_limit=1000.0, tile_grid=1)
    np.testing.assert_array_equal(out[0], [128] * 4 + [255] * 4)


def test_clahe_16bit_stretches_low_contrast_and_keeps_order():
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(30000, 31000, 256), (256, 1))
    img = (ramp + rng.normal(0, 5, ramp.shape)).astype(np.uint16)
    out = clahe(img, clip_limit=40.0, tile_grid=1)
    assert out.dtype == np.uint16
    assert np.ptp(out) > 20 * np.ptp(img)
    # one tile gives one monotone mapping: column means keep the ramp's order
    means = out.mean(axis=0)
    assert np.corrcoef(means, np.arange(256))[0, 1] > 0.999


def test_clahe_clip_limit_controls_contrast():
    rng = np.random.default_rng(1)
    img = (rng.normal(20000, 300, (128, 128))).astype(np.uint16)
    low = clahe(img, clip_limit=1.0, tile_grid=4).std()
    high = clahe(img, clip_limit=2000.0, tile_grid=4).std()
    assert high > 1.5 * low


def test_clahe_native_16bit_bins_hit_clip_floor():
    # With 65,536 bins a 32×32 tile (1,024 pixels) clips at max(1, clip·1024/65536) counts:
    # every clip limit below 64 acts as one count — the reason for the bins param.
    img = np.random.default_rng(2).normal(20000, 300, (128, 128)).astype(np.uint16)
    np.testing.assert_array_equal(clahe(img, 1.0, 4, 65536), clahe(img, 50.0, 4, 65536))
    assert effective_clip_count((128, 128), 50.0, 4, 65536) == 1
    assert effective_clip_count((128, 128), 2.0, 4, 256) == 8
    assert effective_clip_count((4608, 2944), 2.0, 8, 4096) == 103


def test_clahe_bins_restore_clip_limit_meaning():
    img = np.random.default_rng(2).normal(20000, 300, (128, 128)).astype(np.uint16)
    assert not np.array_equal(clahe(img, 1.0, 4, 256), clahe(img, 4.0, 4, 256))
    assert clahe(img, 1.0, 4, 256).std() < clahe(img, 4.0, 4, 256).std()


def test_clahe_16bit_with_256_bins_matches_8bit_clahe():
    # quantising to 256 levels makes 16-bit CLAHE the classic 8-bit algorithm: the same
    # clip limit on the same image gives the same mapping, up to the 8→16-bit scale.
    rng = np.random.default_rng(3)
    img8 = rng.integers(60, 120, (64, 64), dtype=np.uint8)
    img16 = img8.astype(np.uint16) << 8
    out8 = clahe(img8, 2.0, 2, 256).astype(np.float64)
    out16 = clahe(img16, 2.0, 2, 256).astype(np.float64) / 257
    assert np.abs(out8 - out16).max() <= 2.0  # 8-bit look-up tables round to whole levels
    assert np.abs(out8 - out16).mean() < 1.0
    native = clahe(img16, 2.0, 2, 65536).astype(np.float64) / 257
    assert np.abs(out8 - native).mean() > 10 * np.abs(out8 - out16).mean()


def test_crop_tile_grid_matches_full_image_tiles():
    # a 1024×640 image in 8×8 tiles has 128×80-pixel tiles
    assert crop_tile_grid((128, 80), (1024, 640), 8) == 1
    assert crop_tile_grid((512, 160), (1024, 640), 8) == 4
    assert crop_tile_grid((2000, 2000), (1024, 640), 8) == 8


def test_crop_gets_scaled_tile_grid_in_dataset(tmp_path):
    rng = np.random.default_rng(4)
    full = rng.normal(20000, 2000, (256, 160)).clip(0, 65535).astype(np.uint16)
    crop = full[64:128, 40:100].copy()
    write_png(tmp_path / "in/full/a.png", full)
    write_png(tmp_path / "in/roi/a_1_crop.png", crop)
    pd.DataFrame(
        [
            {
                "image_id": "a",
                "kind": "full",
                "full_image_id": "a",
                "image_path": "full/a.png",
                "mask_path": "",
                "height": 256,
                "width": 160,
            },
            {
                "image_id": "a_1",
                "kind": "roi",
                "full_image_id": "a",
                "image_path": "roi/a_1_crop.png",
                "mask_path": "",
                "height": 64,
                "width": 60,
            },
        ]
    ).to_csv(tmp_path / "in/manifest.csv", index=False)
    cfg = EnhanceConfig(clahe=ClaheConfig(tile_grid=8))
    enhance_dataset(tmp_path / "in", tmp_path / "out", cfg, workers=1)
    # tiles of 32×20 px: the 64×60 crop takes round(max(2, 3)) = 3 tiles per side
    expected = median(clahe(crop, 2.0, 3, 4096), 3)
    np.testing.assert_array_equal(read_png(tmp_path / "out/roi/a_1_crop.png"), expected)
    np.testing.assert_array_equal(
        read_png(tmp_path / "out/full/a.png"), median(clahe(full, 2.0, 8, 4096), 3)
    )


@pytest.mark.parametrize("kw", [{"clip_limit": 0.0}, {"tile_grid": 0}])
def test_clahe_rejects_bad_params(kw):
    with pytest.raises(ValueError, match="clahe"):
        clahe(np.zeros((8, 8), np.uint16), **kw)


def test_adaptive_mean_large_noise_gives_local_mean():
    img = np.zeros((3, 3), np.uint8)
    img[1, 1] = 9
    # noise variance ≫ local variance caps the ratio at 1: output = 3×3 local mean = 1
    out = adaptive_mean(img, kernel=3, noise_variance=1e6)
    np.testing.assert_array_equal(out, np.ones((3, 3), np.uint8))


def test_adaptive_mean_tiny_noise_keeps_image():
    img = np.arange(25, dtype=np.uint16).reshape(5, 5) * 1000
    np.testing.assert_array_equal(adaptive_mean(img, 3, noise_variance=1e-6), img)


def test_adaptive_mean_constant_image_unchanged():
    img = np.full((6, 6), 1234, np.uint16)
    np.testing.assert_array_equal(adaptive_mean(img, 5), img)


def test_adaptive_mean_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        adaptive_mean(np.zeros((4, 4), np.uint16), kernel=4)


def test_chain_applies_in_order():
    img = np.full((5, 5), 1000, np.uint16)
    img[2, 2] = 60000
    cfg = EnhanceConfig(chain=("median",))
    np.testing.assert_array_equal(apply_chain(img, cfg), median(img, 3))
    cfg = EnhanceConfig(
        chain=("adaptive_mean", "clahe"),
        adaptive_mean=AdaptiveMeanConfig(kernel=3, noise_variance=1e9),
        clahe=ClaheConfig(clip_limit=3.0, tile_grid=1),
    )
    expected = clahe(adaptive_mean(img, 3, 1e9), 3.0, 1, 4096)
    np.testing.assert_array_equal(apply_chain(img, cfg), expected)


def test_validate_names_unknown_filter():
    with pytest.raises(ValueError, match="unknown filter 'sharpen'.*adaptive_mean, clahe, median"):
        validate(EnhanceConfig(chain=("clahe", "sharpen")))
    with pytest.raises(ValueError, match="empty"):
        validate(EnhanceConfig(chain=()))
