"""Value tables for the enhancement filters (paper §3.2)."""

import numpy as np
import pytest

from mammocad.enhance import (
    AdaptiveMeanConfig,
    ClaheConfig,
    EnhanceConfig,
    adaptive_mean,
    apply_chain,
    clahe,
    effective_clip_count,
    median,
    validate,
)


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


def test_clahe_16bit_clip_floor():
    # OpenCV clips each of the 65,536 bins at max(1, clip · tile_area / 65536) counts:
    # 32×32 tiles hold 1,024 pixels, so every clip limit below 64 acts as one count.
    img = np.random.default_rng(2).normal(20000, 300, (128, 128)).astype(np.uint16)
    np.testing.assert_array_equal(clahe(img, 1.0, 4), clahe(img, 50.0, 4))
    assert effective_clip_count((128, 128), 50.0, 4) == 1
    assert effective_clip_count((128, 128), 200.0, 4) == 3
    assert effective_clip_count((4608, 2944), 2.0, 8) == 6


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
    expected = clahe(adaptive_mean(img, 3, 1e9), 3.0, 1)
    np.testing.assert_array_equal(apply_chain(img, cfg), expected)


def test_validate_names_unknown_filter():
    with pytest.raises(ValueError, match="unknown filter 'sharpen'.*adaptive_mean, clahe, median"):
        validate(EnhanceConfig(chain=("clahe", "sharpen")))
    with pytest.raises(ValueError, match="empty"):
        validate(EnhanceConfig(chain=()))
