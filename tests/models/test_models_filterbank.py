"""The filter-bank feature extractor: layout, batching, robustness to intensity range, and discrimination."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.models.base import FeatureExtractor
from cryoseg.models.filterbank import FilterBankConfig, FilterBankExtractor, average_pool, robust_normalize


def _blobs(shape, centres_radii, noise=0.3, seed=0):
    """Dark disks (value -1) on a 0 background, blurred, plus Gaussian noise; (H, W) float64."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for (cy, cx), r in centres_radii:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = -1.0
    return ndimage.gaussian_filter(img, 1.0) + np.random.default_rng(seed).normal(0, noise, shape)


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shapes_stride_and_finite_values_on_a_non_square_batch():
    fe = FilterBankExtractor()
    images = np.random.default_rng(0).normal(size=(3, 37, 50)) * 100 + 5000
    fm = fe.extract(images)
    cfg = fe.config
    assert isinstance(fe, FeatureExtractor)
    assert fm.features.shape == (3, cfg.n_channels, 10, 13)  # ceil(37 / 4), ceil(50 / 4)
    assert fm.features.dtype == np.float32
    assert np.all(np.isfinite(fm.features))
    assert fm.stride == (4.0, 4.0) and fm.image_shape == (37, 50) and fm.patch_size == 4
    assert len(cfg.channel_names()) == cfg.n_channels == 4 * 7
    # Channels are standardised per image.
    np.testing.assert_allclose(fm.features.mean(axis=(2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(fm.features.std(axis=(2, 3)), 1, atol=1e-3)


def test_feature_subset_and_stride_change_the_layout():
    fe = FilterBankExtractor(FilterBankConfig(sigmas=(1.0, 3.0), stride=3, features=("log", "hessian")))
    fm = fe.extract(np.random.default_rng(1).normal(size=(1, 20, 31)))
    assert fm.features.shape == (1, 2 * 3, 7, 11)
    assert fe.config.channel_names()[:3] == ["log@s1", "hessian0@s1", "hessian1@s1"]


def test_average_pool_averages_partial_edge_cells_over_real_pixels_only():
    img = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    pooled = average_pool(img, 4)
    assert pooled.shape == (1, 2, 2)
    assert pooled[0, 0, 0] == pytest.approx(img[0, :4, :4].mean())
    assert pooled[0, 1, 1] == pytest.approx(img[0, 4:, 4:].mean())  # a 1 x 3 cell, no zero padding counted
    assert pooled[0, 0, 1] == pytest.approx(img[0, :4, 4:].mean())


def test_batch_gives_the_same_features_as_one_image_at_a_time():
    fe = FilterBankExtractor()
    rng = np.random.default_rng(2)
    images = np.stack([_blobs((40, 44), [((20, 20), 5)], seed=s) for s in range(3)]) * rng.uniform(1, 9, (3, 1, 1))
    together = fe.extract(images).features
    for i in range(3):
        np.testing.assert_allclose(together[i], fe.extract(images[i:i + 1]).features[0], atol=1e-5)


def test_features_do_not_depend_on_the_intensity_range():
    fe = FilterBankExtractor()
    img = _blobs((48, 48), [((24, 24), 6)])
    a = fe.extract(img[None]).features
    b = fe.extract((img * 1234.5 - 77.0)[None].astype(np.float32)).features
    np.testing.assert_allclose(a, b, atol=2e-3)


def test_same_blobs_are_similar_and_differ_from_background_and_other_sizes():
    img = _blobs((96, 128), [((30, 30), 6), ((64, 92), 6), ((70, 30), 14)])
    f = FilterBankExtractor().extract(img[None]).features[0]

    def cell(y, x):
        return f[:, y // 4, x // 4]

    same = _cos(cell(30, 30), cell(64, 92))
    background = max(_cos(cell(30, 30), cell(y, x)) for y, x in [(10, 70), (85, 115), (10, 120), (50, 60)])
    other_size = _cos(cell(30, 30), cell(70, 30))
    assert same > 0.9
    assert same > background + 0.5
    assert same > other_size + 0.2


def test_constant_image_gives_finite_zero_features():
    fm = FilterBankExtractor().extract(np.full((2, 16, 16), 3.0))
    assert np.all(fm.features == 0)


def test_signature_lists_every_parameter_and_follows_them():
    a = FilterBankExtractor().signature()
    for key in ("name", "sigmas", "stride", "features", "dog_ratio", "clip_percentiles", "truncate"):
        assert key in a
    assert a["name"] == "filterbank"
    b = FilterBankExtractor(FilterBankConfig(sigmas=(1.0, 2.0))).signature()
    assert a != b and b["sigmas"] == [1.0, 2.0]


@pytest.mark.parametrize("images, match", [
    (np.zeros((16, 16)), "shape"),
    (np.zeros((1, 1, 16)), "shape"),
    (np.full((1, 8, 8), np.nan), "NaN"),
])
def test_bad_images_are_rejected(images, match):
    with pytest.raises(InputError, match=match):
        FilterBankExtractor().extract(images)


@pytest.mark.parametrize("kwargs, match", [
    ({"sigmas": ()}, "sigmas"),
    ({"sigmas": (0.0,)}, "sigmas"),
    ({"stride": 0}, "stride"),
    ({"features": ("gabor",)}, "features"),
    ({"clip_percentiles": (50.0, 10.0)}, "clip_percentiles"),
])
def test_bad_configs_are_rejected(kwargs, match):
    with pytest.raises(InputError, match=match):
        FilterBankConfig(**kwargs)


def test_robust_normalize_ignores_outliers():
    img = np.random.default_rng(3).normal(size=(64, 64))
    spiked = img.copy()
    spiked[0, 0] = 1e6  # one hot pixel must not flatten the rest
    out = robust_normalize(spiked)
    assert out.dtype == np.float32
    assert np.corrcoef(out.ravel()[1:], img.ravel()[1:])[0, 1] > 0.99
