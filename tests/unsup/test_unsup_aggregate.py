"""Aggregation of spectral maps and smoothing along z, on constructed maps with known answers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import structural_similarity

from cryoseg.errors import InputError
from cryoseg.unsup.aggregate import (
    AggregateConfig,
    aggregate_maps,
    count_regions,
    diversity_score,
    orient_map,
    smooth_along_z,
)

S = 64
YY, XX = np.mgrid[:S, :S]


def _structure() -> np.ndarray:
    """A thin ring (a membrane) and three small discs (particles), bright on a dark background, in [0, 1]."""
    m = np.zeros((S, S))
    m[np.abs(np.hypot(YY - 32, XX - 32) - 20) < 1.0] = 1.0
    for cy, cx in [(20, 32), (40, 26), (34, 42)]:
        m[np.hypot(YY - cy, XX - cx) < 4] = 1.0
    m = ndimage.gaussian_filter(m, 1.0)
    return m / m.max()


def _noise(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((S, S)) for _ in range(n)]


def test_orient_map_flips_a_map_whose_bright_side_is_the_majority():
    st = _structure()
    dark_on_bright = 3.0 - 2.0 * st  # structure dark, background bright, not in [0, 1]
    out = orient_map(dark_on_bright)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, st, atol=1e-6)
    # Already structure-high: only normalised, not flipped.
    np.testing.assert_allclose(orient_map(5 * st + 1), st, atol=1e-6)
    assert np.all(orient_map(np.full((8, 8), 0.7)) == 0)


def test_count_regions_and_diversity():
    st = _structure()
    assert count_regions(st) == 4  # the ring and the three discs
    assert count_regions(np.zeros((10, 10))) == 0
    ramp = np.tile(np.linspace(0.0, 1.0, S), (S, 1))
    # A flat ramp has the same contrast in every patch: no diversity. The structure map has plenty.
    assert diversity_score(ramp) < 1e-9
    assert diversity_score(st) > 0.05
    assert diversity_score(st) > 2 * diversity_score(_noise(1)[0])
    with pytest.raises(InputError, match="at least 4 x 4"):
        diversity_score(np.zeros((3, 10)))


def test_aggregate_picks_the_structure_among_noise_maps():
    maps = np.stack([*_noise(2), 1.0 - _structure(), *_noise(7, seed=1)])  # the structure comes dark-on-bright
    assert count_regions(maps[0]) > AggregateConfig().max_contours_base  # noise is not a base candidate
    out = aggregate_maps(maps)
    assert out.used == (2,)  # nothing merged: noise is dissimilar to the structure
    assert out.map.shape == (S, S) and out.map.dtype == np.float32
    np.testing.assert_allclose(out.map, _structure(), atol=1e-6)


def test_aggregate_merges_two_halves_of_the_same_structure():
    st = _structure()
    left, right = st * (XX < 32), st * (XX >= 32)
    # Precondition of the test: the halves are similar enough to be merge candidates (flat background agrees).
    assert structural_similarity(left, right, data_range=1.0) > AggregateConfig().min_ssim
    maps = np.stack([_noise(1)[0], left, *_noise(3, seed=2), right, *_noise(4, seed=3)])
    out = aggregate_maps(maps)
    assert sorted(out.used) == [1, 5]
    on = st > 0.5
    assert out.map[on & (XX < 32)].mean() > 0.6 and out.map[on & (XX >= 32)].mean() > 0.6
    assert out.map[st < 0.01].max() < 0.05  # background stays low
    # Without merges only the base half is bright.
    alone = aggregate_maps(maps, AggregateConfig(max_merges=0))
    assert alone.used == out.used[:1]
    other = XX >= 32 if out.used[0] == 1 else XX < 32
    assert alone.map[on & other].max() < 0.05


def test_aggregate_keeps_only_the_first_maps():
    maps = np.stack([*_noise(3), _structure()])
    assert aggregate_maps(maps, AggregateConfig(keep=3)).used[0] in (0, 1, 2)
    assert aggregate_maps(maps, AggregateConfig(keep=4)).used[0] == 3


def test_aggregate_falls_back_to_the_most_diverse_map(caplog):
    maps = np.stack(_noise(4))
    maps[2] = np.where(XX < 32, maps[2], 0.5 + 0.3 * (maps[2] - 0.5))  # contrast differs by half: most diverse
    scores = [diversity_score(orient_map(m)) for m in maps]
    assert all(count_regions(m) > AggregateConfig().max_contours_base for m in maps)
    with caplog.at_level(logging.DEBUG, logger="cryoseg.unsup.aggregate"):
        out = aggregate_maps(maps)
    assert out.used[0] == int(np.argmax(scores)) == 2
    assert "no map has <= 10 regions" in caplog.text


def test_aggregate_bad_input():
    with pytest.raises(InputError, match="K, h, w"):
        aggregate_maps(np.zeros((S, S)))
    with pytest.raises(InputError, match="at least 7 x 7"):
        aggregate_maps(np.zeros((2, 5, 5)))
    with pytest.raises(InputError, match="finite"):
        aggregate_maps(np.full((2, S, S), np.nan))
    with pytest.raises(InputError, match="min_ssim"):
        AggregateConfig(min_ssim=2.0)


def test_smooth_replaces_an_outlier_between_agreeing_neighbours():
    st = _structure()
    other = np.roll(st, 15, axis=1)  # the same kind of map, elsewhere: disagrees with `st`
    stack = np.stack([st, st, other, st, st])
    out = smooth_along_z(stack, blend=False)
    np.testing.assert_allclose(out, np.stack([st] * 5), atol=1e-6)
    blended = smooth_along_z(stack)
    np.testing.assert_allclose(blended[2], st, atol=1e-6)  # replaced, not blended
    # Its neighbours are blended with it (with the original slice, as in the reference).
    np.testing.assert_allclose(blended[1], 0.75 * st + 0.25 * other, atol=1e-6)
    np.testing.assert_array_equal(blended[[0, 4]], stack[[0, 4]].astype(np.float32))


def test_smooth_leaves_a_consistent_stack_and_blends_gradual_change():
    st = _structure()
    same = np.stack([st] * 4).astype(np.float32)
    np.testing.assert_allclose(smooth_along_z(same), same, atol=1e-7)
    # A slowly brightening stack has no outlier: interior slices are (cur + prev/2 + next/2) / 2.
    ramp = np.stack([st * f for f in (0.6, 0.7, 0.8, 0.9)])
    out = smooth_along_z(ramp)
    np.testing.assert_allclose(out[1], 0.5 * ramp[1] + 0.25 * (ramp[0] + ramp[2]), atol=1e-6)
    np.testing.assert_allclose(out[[0, 3]], ramp[[0, 3]], atol=1e-7)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    # Too short to smooth: returned as is.
    np.testing.assert_array_equal(smooth_along_z(ramp[:2]), ramp[:2].astype(np.float32))


def test_smooth_bad_input():
    with pytest.raises(InputError, match="Z, H, W"):
        smooth_along_z(np.zeros((S, S)))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        smooth_along_z(np.full((3, S, S), 2.0))


def test_localised_maps_take_no_part():
    from cryoseg.unsup.aggregate import participation

    yy, xx = np.mgrid[:32, :32]
    structure = (np.hypot(yy - 16, xx - 16) < 6).astype(float) + 0.01 * xx
    dot = np.zeros((32, 32))
    dot[5, 5] = 1.0  # an eigenvector localised on one weakly linked cell
    assert participation(dot) == pytest.approx(1 / 1024) and participation(np.ones((4, 4))) == pytest.approx(1.0)
    result = aggregate_maps(np.stack([dot, structure]))
    assert result.used[0] == 1 and 0 not in result.used
    # with only localised maps, the least localised is used rather than none
    assert aggregate_maps(np.stack([dot, dot * 0.5 + np.roll(dot, 7)])).used == (1,)


def test_suppress_background_leaves_only_what_stands_above_the_texture():
    from cryoseg.unsup.aggregate import suppress_background
    from cryoseg.unsup.threshold import adaptive_threshold

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    blob = np.hypot(yy - 32, xx - 20) < 6
    m = np.clip(0.3 + 0.08 * ndimage.gaussian_filter(rng.normal(size=(64, 64)), 1) * 4 + 0.6 * blob, 0, 1)
    out = suppress_background(m)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == pytest.approx(1.0)
    assert np.all(out[blob] > 0) and np.mean(out[~blob] == 0) > 0.5
    # the point: a local threshold marks a third of the raw map's texture, half as much of the suppressed one
    before, after = adaptive_threshold(m)[~blob].mean(), adaptive_threshold(out)[~blob].mean()
    assert before > 0.25 and after < 0.6 * before
    assert adaptive_threshold(out)[blob].mean() > 0.5
    assert np.all(suppress_background(np.full((8, 8), 0.4)) == 0)
