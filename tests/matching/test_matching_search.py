"""Hierarchical Feature Matching finds planted copies, in voxel coordinates, with fewer evaluations than naive."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.geometry import VIEWS, view_axes
from cryoseg.matching import MatchingConfig, Query, VolumeFeatures, make_query, match
from cryoseg.models.filterbank import FilterBankExtractor

SHAPE = (64, 96, 96)

VIEW_AXES = {v: view_axes(v) for v in VIEWS}  # (slice axis, row axis, column axis) of each view


def _ball(shape, centre, radius):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def _stacks_from_field(field, stride=4, step=4):
    """What an extractor with patch `stride` gives for each view of a per-voxel field (Z, Y, X, C)."""
    stacks = {}
    for view, (axis, rows, cols) in VIEW_AXES.items():
        idx = np.arange(0, field.shape[axis], step) + (step - 1) // 2
        idx = idx[idx < field.shape[axis]]
        images = np.moveaxis(np.moveaxis(np.take(field, idx, axis=axis), axis, 0), -1, 1)  # (n, C, H, W)
        n, c, H, W = images.shape
        pooled = images.reshape(n, c, H // stride, stride, W // stride, stride).mean(axis=(3, 5))
        stacks[view] = (pooled, (stride, stride), idx)
    return stacks


def _extract_stacks(volume, step=4):
    """Filter-bank features of every `step`-th slice of each view (the embed module's job, done inline)."""
    extractor = FilterBankExtractor()
    stacks = {}
    for view, (axis, _, _) in VIEW_AXES.items():
        idx = np.arange(0, volume.shape[axis], step) + (step - 1) // 2
        fm = extractor.extract(np.moveaxis(np.take(volume, idx, axis=axis), axis, 0))
        stacks[view] = (fm.features, fm.stride, idx)
    return stacks


def _synthetic_field(rng, objects, channels=32):
    """Smooth random background plus objects (centre, radius, direction).

    An object adds a Gaussian-profile bump along its direction (channels 3 and up) plus its voxels' signed offsets
    from its centre (channels 0..2), so features vary inside an object and its centre is the unique best match,
    as with real multi-scale features (a constant direction would give a plateau of equal similarities).
    There are many channels, as real features have, so that random background rarely points like an object.
    """
    field = ndimage.gaussian_filter(rng.normal(size=(*SHAPE, channels)), (2, 2, 2, 0)).astype(np.float32)
    field *= 0.1 / field.std()
    zz, yy, xx = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for centre, radius, direction in objects:
        offsets = [zz - centre[0], yy - centre[1], xx - centre[2]]
        bump = np.exp(-sum(o**2 for o in offsets) / (2 * (radius / 1.5) ** 2))
        field += (2.0 * bump)[..., None] * direction
        for k, o in enumerate(offsets):
            field[..., k] += bump * o / 3.0
    return field


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


A = _unit([0, 0, 0, 1] + [0] * 28)
B = _unit([0, 0, 0, 0.8, 0.6] + [0] * 27)  # cosine 0.8 with A: a plausible look-alike
A_CENTRES = [(21.0, 37.0, 50.0), (40.0, 13.0, 77.0), (14.0, 70.0, 18.0), (47.0, 66.0, 42.0), (30.0, 80.0, 80.0)]
B_CENTRES = [(12.0, 14.0, 14.0), (50.0, 20.0, 30.0), (20.0, 50.0, 85.0)]


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(7)
    objects = [(c, 9, A) for c in A_CENTRES] + [(c, 9, B) for c in B_CENTRES]
    # No whitening: these ideal features need no decorrelation, and B must stay a close look-alike of A.
    feats = VolumeFeatures.from_stacks(SHAPE, _stacks_from_field(_synthetic_field(rng, objects)), whiten=False)
    return feats, make_query(feats, _ball(SHAPE, A_CENTRES[0], 9))


def _nearest(points, centres):
    d = np.linalg.norm(np.asarray(points)[:, None] - np.asarray(centres)[None], axis=2)
    return d.min(axis=1), d.argmin(axis=1)


@pytest.mark.parametrize("mode", ["hierarchical", "naive"])
def test_planted_copies_found_at_their_voxel_positions(synthetic, mode):
    feats, query = synthetic
    result = match(feats, query, MatchingConfig(mode=mode, tau_sim=0.5, min_score=0.85))
    dist, which = _nearest(result.points, A_CENTRES)
    # Every planted copy is found, within 1.5 voxels (no off-by-stride shift), and nothing else scores as high.
    assert sorted(which[dist <= 1.5].tolist()) == list(range(len(A_CENTRES)))
    assert len(result.points) == len(A_CENTRES)
    assert [s.level for s in result.levels] == ([16, 8, 4] if mode == "hierarchical" else [4])


def test_hierarchical_needs_fewer_evaluations_with_the_same_picks(synthetic):
    feats, query = synthetic
    config = MatchingConfig(min_score=0.85)
    hier = match(feats, query, config)
    naive = match(feats, query, MatchingConfig(min_score=0.85, mode="naive"))
    assert naive.n_evaluations == 16 * 24 * 24  # every finest cell
    assert hier.n_evaluations * 3 < naive.n_evaluations
    assert hier.n_evaluations == sum(s.n_evaluated for s in hier.levels)
    np.testing.assert_allclose(np.sort(hier.scores), np.sort(naive.scores), atol=1e-6)


def test_negative_exemplar_suppresses_a_lookalike(synthetic):
    feats, query = synthetic
    config = MatchingConfig(tau_sim=0.5, mode="naive")  # every cell, so only the scores decide
    plain = match(feats, query, config)
    d_b, _ = _nearest(plain.points, B_CENTRES)
    assert np.sum(d_b <= 2) == len(B_CENTRES)  # the look-alikes are picked without a negative
    pushed = match(feats, query, config, negatives=np.array([B_CENTRES[0]]))
    d_b, _ = _nearest(pushed.points, B_CENTRES)
    d_a, _ = _nearest(pushed.points, A_CENTRES)
    assert np.sum(d_b <= 2) == 0  # all copies of the look-alike are gone, not just the one marked
    assert np.sum(d_a <= 1.5) == len(A_CENTRES)


def test_chunked_equals_unchunked(synthetic):
    feats, query = synthetic
    big = match(feats, query, MatchingConfig(chunk_cells=10**7))
    small = match(feats, query, MatchingConfig(chunk_cells=37))
    # Equal up to float rounding (BLAS sums in a different order for different batch sizes).
    assert len(big.points) == len(small.points) > 0
    np.testing.assert_allclose(big.points, small.points, atol=1e-4)
    np.testing.assert_allclose(big.scores, small.scores, atol=1e-5)
    assert big.n_evaluations == small.n_evaluations
    assert [s.n_evaluated for s in big.levels] == [s.n_evaluated for s in small.levels]


def test_nms_radius_is_respected_and_top_k_applies(synthetic):
    feats, query = synthetic
    result = match(feats, query, MatchingConfig(tau_sim=0.0, nms_radius=20.0, top_k=6))
    assert len(result.points) == 6
    d = np.linalg.norm(result.points[:, None] - result.points[None], axis=2)
    assert d[np.triu_indices(len(d), 1)].min() > 20.0
    assert np.all(np.diff(result.scores) <= 0)
    assert result.nms_radius == 20.0
    # Default radius comes from the prompt mask: the equivalent-sphere radius of a radius-9 ball.
    assert match(feats, query).nms_radius == pytest.approx(9, abs=0.5)


def test_filterbank_features_find_planted_blobs_not_rods():
    rng = np.random.default_rng(11)
    volume = ndimage.gaussian_filter(rng.normal(size=SHAPE), 1.0).astype(np.float32) * 2
    balls = [(16.0, 20.0, 22.0), (16.0, 70.0, 30.0), (45.0, 30.0, 70.0), (47.0, 75.0, 74.0), (30.0, 49.0, 47.0)]
    for c in balls:
        volume[_ball(SHAPE, c, 6)] += 1.5
    for z, y, x in [(15, 45, 75), (45, 76, 20), (40, 12, 45)]:  # rods along x, same contrast
        volume[z - 2:z + 3, y - 2:y + 3, x - 10:x + 10] += 1.5
    feats = VolumeFeatures.from_stacks(SHAPE, _extract_stacks(volume))
    query = make_query(feats, _ball(SHAPE, balls[0], 6))
    picks = {}
    for mode in ("hierarchical", "naive"):
        result = match(feats, query, MatchingConfig(mode=mode))
        dist, which = _nearest(result.points[: len(balls)], balls)
        # Stride-4 features place a blob to within about half a cell; and there is no systematic shift.
        assert np.all(dist <= 3.0), (mode, dist)
        assert np.linalg.norm((result.points[: len(balls)] - np.asarray(balls)[which]).mean(axis=0)) < 1.0
        assert sorted(which.tolist()) == list(range(len(balls)))
        picks[mode] = result
    assert picks["hierarchical"].n_evaluations < picks["naive"].n_evaluations


def test_bad_queries_and_configs_raise():
    feats = VolumeFeatures.from_stacks((16, 16, 16), _stacks_from_field(np.random.default_rng(0).normal(
        size=(16, 16, 16, 3)).astype(np.float32)))
    with pytest.raises(InputError, match="multiple"):
        MatchingConfig(levels=(16, 6))
    with pytest.raises(InputError, match="mode"):
        MatchingConfig(mode="fast")
    with pytest.raises(InputError, match="channels"):
        match(feats, np.ones(4))
    with pytest.raises(InputError, match="empty"):
        match(feats, np.zeros((16, 16, 16), bool))
    with pytest.raises(InputError, match="outside the volume"):
        match(feats, Query(np.ones(9)), negatives=np.array([[3.0, 3.0, 40.0]]))
