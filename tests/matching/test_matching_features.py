"""VolumeFeatures: per-view normalisation, trilinear sampling, the true masked mean, building from an extractor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.geometry import VIEWS, view_axes
from cryoseg.matching import VolumeFeatures
from cryoseg.models.base import FeatureExtractor, FeatureMap

VIEW_AXES = {v: view_axes(v) for v in VIEWS}  # (slice axis, row axis, column axis) of each view


def _random_stacks(shape, channels, stride, step, rng):
    """Per-view stacks (n, C, h, w) with slices every `step` voxels (block centres) and cells of `stride`."""
    stacks = {}
    for view, (axis, rows, cols) in VIEW_AXES.items():
        idx = np.arange(0, shape[axis], step) + (step - 1) // 2
        idx = idx[idx < shape[axis]]
        h, w = -(-shape[rows] // stride), -(-shape[cols] // stride)
        stacks[view] = (rng.normal(size=(len(idx), channels, h, w)).astype(np.float32), (stride, stride), idx)
    return stacks


def test_stride_one_masked_mean_equals_hand_computation():
    rng = np.random.default_rng(1)
    shape = (6, 7, 8)
    stacks = _random_stacks(shape, 4, 1, 1, rng)
    feats = VolumeFeatures.from_stacks(shape, stacks, center=False, whiten=False)
    mask = np.zeros(shape, bool)
    mask[1:4, 2:5, 3:7] = True
    mask[2, 2, 3] = False
    # By hand: per voxel, each view's vector normalised, concatenated, divided by sqrt(3); then the mean.
    per_view = []
    for view, (raw, _, _) in stacks.items():
        vol = np.moveaxis(raw, 1, -1)  # (n, h, w, C) on the view's axes
        vol = np.transpose(vol, np.argsort(VIEW_AXES[view]).tolist() + [3])  # back to (Z, Y, X, C)
        per_view.append(vol / np.linalg.norm(vol, axis=-1, keepdims=True))
    full = np.concatenate(per_view, axis=-1) / np.sqrt(3)
    expected = full[mask].mean(axis=0)
    np.testing.assert_allclose(feats.masked_mean(mask), expected, atol=2e-3)  # cells are stored as float16
    assert feats.channels == 12


def test_sampling_is_trilinear_on_the_patch_grid():
    """Stride 4, slices every 4: compare with scipy's map_coordinates on each view's own grid."""
    rng = np.random.default_rng(2)
    shape = (16, 20, 24)
    stacks = _random_stacks(shape, 3, 4, 4, rng)
    feats = VolumeFeatures.from_stacks(shape, stacks, center=False, whiten=False)
    points = rng.uniform(0, np.array(shape) - 1, size=(25, 3))
    got = feats.sample(points)
    expected = []
    for view, (raw, stride, idx) in stacks.items():
        axis, rows, cols = VIEW_AXES[view]
        unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        # Grid coordinates: slice index by interpolation of the slice positions, cells by (p + 0.5) / s - 0.5.
        gs = np.interp(points[:, axis], idx, np.arange(len(idx)))
        gr = (points[:, rows] + 0.5) / stride[0] - 0.5
        gc = (points[:, cols] + 0.5) / stride[1] - 0.5
        vals = np.stack([ndimage.map_coordinates(unit[:, c], [gs, gr, gc], order=1, mode="nearest")
                         for c in range(unit.shape[1])], axis=1)
        expected.append(vals / np.linalg.norm(vals, axis=1, keepdims=True))
    expected = np.concatenate(expected, axis=1) / np.sqrt(3)
    np.testing.assert_allclose(got, expected, atol=2e-3)  # float16 cells
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_masked_mean_is_the_mean_of_per_voxel_features_not_a_centroid_sample():
    rng = np.random.default_rng(3)
    shape = (16, 16, 16)
    feats = VolumeFeatures.from_stacks(shape, _random_stacks(shape, 5, 4, 4, rng))
    mask = np.zeros(shape, bool)
    mask[2:6, 3:11, 4:9] = True
    expected = feats.sample(np.argwhere(mask).astype(float)).mean(axis=0)
    got = feats.masked_mean(mask)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    centroid = feats.sample(np.argwhere(mask).mean(axis=0)[None])[0]
    assert not np.allclose(got / np.linalg.norm(got), centroid, atol=1e-3)


def test_whitening_decorrelates_the_background():
    rng = np.random.default_rng(4)
    shape = (8, 32, 32)
    stacks = _random_stacks(shape, 6, 1, 1, rng)
    # Make channel 1 almost a copy of channel 0 in every view: strongly correlated background.
    for raw, _, _ in stacks.values():
        raw[:, 1] = raw[:, 0] + 0.05 * raw[:, 1]
    plain = VolumeFeatures.from_stacks(shape, stacks, whiten=False)
    white = VolumeFeatures.from_stacks(shape, stacks, whiten=True)
    for feats, correlated in ((plain, True), (white, False)):
        data = feats.stacks[0].features.reshape(-1, 6)
        corr = np.corrcoef(data[:, 0], data[:, 1])[0, 1]
        assert (abs(corr) > 0.9) == correlated


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(5)
    shape = (8, 8, 8)
    stacks = _random_stacks(shape, 2, 4, 4, rng)
    feats = VolumeFeatures.from_stacks(shape, stacks)
    with pytest.raises(InputError, match="mask shape"):
        feats.masked_mean(np.ones((8, 8, 7), bool))
    with pytest.raises(InputError, match="empty"):
        feats.masked_mean(np.zeros(shape, bool))
    with pytest.raises(InputError, match="does not cover"):
        VolumeFeatures.from_stacks((8, 8, 16), stacks)
    with pytest.raises(InputError, match="unknown view"):
        VolumeFeatures.from_stacks(shape, {"w": stacks["z"]})
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        feats.sample(np.zeros((4, 2)))


class _CountingExtractor(FeatureExtractor):
    """Per-pixel intensity and its square, pooled to cells of `stride`; counts the images it sees."""

    name = "counting"

    def __init__(self, stride: int = 2) -> None:
        self.stride = stride
        self.images = 0

    def extract(self, images: np.ndarray) -> FeatureMap:
        images = np.asarray(images, np.float32)
        self.images += len(images)
        b, H, W = images.shape
        s = self.stride
        feats = np.stack([images, images**2, np.ones_like(images)], axis=1)
        pooled = feats.reshape(b, 3, H // s, s, W // s, s).mean(axis=(3, 5))
        return FeatureMap(pooled, (float(s), float(s)), (H, W), s)


def test_build_volume_features_embeds_each_sampled_slice_once(tmp_path):
    from cryoseg.matching import build_volume_features

    rng = np.random.default_rng(6)
    volume = rng.normal(size=(12, 16, 20)).astype(np.float32)
    extractor = _CountingExtractor(stride=2)
    feats = build_volume_features(volume, extractor, cache_dir=tmp_path / "cache")
    # One probe slice to learn the stride, then every 2nd slice of each view: 6 + 8 + 10.
    assert extractor.images == 1 + 6 + 8 + 10
    assert feats.views == ("z", "y", "x") and feats.channels == 9
    # Same numbers as assembling the stacks by hand (slices 0, 2, ...; the centre of each pair is index 0, 2...).
    manual = {}
    for view, (axis, _, _) in VIEW_AXES.items():
        idx = np.arange(0, volume.shape[axis], 2)
        fm = _CountingExtractor(2).extract(np.moveaxis(np.take(volume, idx, axis=axis), axis, 0))
        manual[view] = (fm.features, fm.stride, idx)
    expected = VolumeFeatures.from_stacks(volume.shape, manual)
    points = rng.uniform(0, 11, size=(20, 3))
    np.testing.assert_allclose(feats.sample(points), expected.sample(points), atol=2e-3)  # cache stores float16
    # A second build reads the cache: only the probe slice is computed again.
    again = _CountingExtractor(stride=2)
    build_volume_features(volume, again, cache_dir=tmp_path / "cache")
    assert again.images == 1


def test_build_volume_features_bad_input():
    from cryoseg.matching import build_volume_features

    with pytest.raises(InputError, match="3D volume"):
        build_volume_features(np.zeros((4, 4)), _CountingExtractor())
    with pytest.raises(InputError, match="views"):
        build_volume_features(np.zeros((4, 4, 4)), _CountingExtractor(), views=("z", "q"))
    with pytest.raises(InputError, match="slice_step"):
        build_volume_features(np.zeros((4, 4, 4)), _CountingExtractor(), slice_step=0)


def test_coarse_levels_average_the_cells_they_cover():
    """At spacing 8, a stride-4 grid sampled every 4 slices is pooled 2x2x2; a pooled sample is their mean."""
    rng = np.random.default_rng(8)
    shape = (16, 16, 16)
    raw = rng.normal(size=(4, 3, 4, 4)).astype(np.float32)  # slices 1, 5, 9, 13; cells centred 1.5, 5.5, ...
    feats = VolumeFeatures.from_stacks(shape, {"z": (raw, (4, 4), [1, 5, 9, 13])}, center=False, whiten=False)
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    cases = (((0, 0, 0), (3.0, 3.5, 3.5)), ((1, 0, 1), (11.0, 3.5, 11.5)), ((1, 1, 1), (11.0, 11.5, 11.5)))
    for (k, i, j), point in cases:
        block = unit[2 * k:2 * k + 2, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(axis=(0, 2, 3))
        got = feats.sample(np.array([point]), spacing=8)[0]
        np.testing.assert_allclose(got, block / np.linalg.norm(block), atol=2e-3)  # float16 cells
    # Spacing 16 is pooled from spacing 8: one cell, the mean of everything.
    whole = unit.mean(axis=(0, 2, 3))
    got = feats.sample(np.array([[7.0, 7.5, 7.5]]), spacing=16)[0]
    np.testing.assert_allclose(got, whole / np.linalg.norm(whole), atol=2e-3)
