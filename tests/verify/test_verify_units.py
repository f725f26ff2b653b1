"""The parts of verification on their own: rotational correlation, template averaging, negatives, the cut, leaks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.segment3d.records import InstanceInfo
from cryoseg.verify import VerifyConfig, blob_candidates, choose_cut, is_leaked, repair_leak, verify
from cryoseg.verify.correlate import Sphere, correlate, exemplar_vectors


def rod(shape, centre, axis):
    """A blurred rod of length 13 through `centre` along `axis` (z, y, x unit vector): an anisotropic particle."""
    grid = np.indices(shape).reshape(3, -1).T - np.asarray(centre)
    along = grid @ np.asarray(axis, float)
    across = np.linalg.norm(grid - along[:, None] * np.asarray(axis, float), axis=1)
    return ((np.abs(along) <= 6) & (across <= 2)).reshape(shape).astype(np.float32)


def blob(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) <= radius**2).astype(np.float32)


@pytest.fixture(scope="module")
def scene():
    """Rods along z, y and x (one kind, three orientations) and balls of about the rods' volume (another kind)."""
    shape = (40, 40, 120)
    rods = [((20, 20, 15), (1, 0, 0)), ((20, 20, 45), (0, 1, 0)), ((20, 20, 75), (0, 0, 1))]
    balls = [(20, 20, 100), (8, 8, 60)]
    volume = sum(rod(shape, c, a) for c, a in rods) + sum(blob(shape, c, 3.6) for c in balls)
    noisy = ndimage.gaussian_filter(volume, 0.7) + np.random.default_rng(0).normal(0, 0.15, shape)
    return noisy.astype(np.float32), np.array([c for c, _ in rods], float), np.array(balls, float)


def test_a_rotated_copy_correlates_better_than_another_shape(scene):
    volume, rods, balls = scene
    sphere = Sphere.of(7.0)
    exemplars = exemplar_vectors(volume, rods[:1], sphere, 30.0)
    found = correlate(volume, np.concatenate([rods[1:], balls]) + (1, 0, -1), exemplars, sphere, shift=1)
    assert found.score[:2].min() > 0.7 > found.score[2:].max()
    assert np.allclose(found.centre[:2], rods[1:])  # the one-voxel offset is found
    assert (found.exemplar == 0).all()


def test_verify_keeps_the_prompted_kind_and_reports_the_cut(scene):
    volume, rods, balls = scene
    candidates = np.concatenate([rods, balls])
    result = verify(volume, candidates, rods[:1], 4.0, config=VerifyConfig(cut=0.6))
    assert result.cut.how == "given"
    assert sorted(map(tuple, result.centre[result.passed])) == sorted(map(tuple, rods[1:]))
    assert not np.isin(result.source, [0]).any()  # the prompted particle is never a candidate of its own
    assert result.report()["passed"] == 2


def test_a_negative_exemplar_lowers_what_looks_like_it(scene):
    volume, rods, balls = scene
    candidates = np.concatenate([rods[1:], balls[:1]])
    # a ball-shaped prompt scores the other ball high and the rods lower; a rod as negative lowers them further
    config = VerifyConfig(cut=0.6)
    plain = verify(volume, candidates, balls[1:], 4.0, config=config)
    pushed = verify(volume, candidates, balls[1:], 4.0, negatives=rods[:1], config=config)
    by_place = lambda r: dict(zip(r.source.tolist(), r.score))  # noqa: E731
    before, after = by_place(plain), by_place(pushed)
    assert after[2] == pytest.approx(before[2], abs=0.02)  # the ball is not like the rod: unchanged
    assert after[0] < before[0] - 0.1 and after[1] < before[1] - 0.1
    assert np.all(np.isfinite(pushed.negative)) and np.all(np.isnan(plain.negative))
    assert pushed.passed.tolist() == [True, False, False]  # best first: the ball alone passes


def test_blob_candidates_are_capped_to_the_strongest(scene):
    volume, rods, balls = scene
    every = blob_candidates(volume, 3.6, "bright", 3.0)
    two = blob_candidates(volume, 3.6, "bright", 3.0, top_k=2)
    assert len(every) > 2 and np.array_equal(two, every[:2])
    assert np.min(np.linalg.norm(balls[:, None] - two[None], axis=2), axis=0).max() <= 2  # the two balls


def test_cut_splits_two_groups_and_keeps_all_of_a_handful():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.3, 0.03, 200), rng.normal(0.7, 0.05, 20)])
    cut = choose_cut(scores)
    assert cut.how == "mixture" and 0.42 < cut.value < 0.6
    few = choose_cut(np.array([0.9, 0.8, 0.85]))
    assert few.how == "all" and few.value == pytest.approx(0.8)


def test_three_prompts_set_the_cut_from_their_own_scores():
    scores = np.concatenate([np.full(50, 0.3), np.full(50, 0.5), np.full(30, 0.7)])  # two kinds score high
    anchored = choose_cut(scores, prompt_scores=np.array([0.68, 0.72, 0.7]))
    assert anchored.how == "prompts" and anchored.value == pytest.approx(0.7 - 2 * 0.02)
    assert choose_cut(scores, prompt_scores=np.array([0.68, 0.72])).how != "prompts"  # two are too few


def test_verify_with_three_prompts_cuts_between_the_kinds(scene):
    volume, rods, balls = scene
    extra = np.concatenate([rods, balls, [(8, 30, 100), (30, 8, 20)]])  # two empty places as well
    result = verify(volume, extra, rods, 4.0)
    assert result.cut.how == "prompts"
    assert result.score[result.passed].size == 0 or result.score[result.passed].min() >= result.cut.value
    on_balls = np.isin(result.source, [3, 4])
    assert on_balls.any() and (result.score[on_balls] < result.cut.value).all()


def _instance(mask: np.ndarray, prompt) -> tuple[np.ndarray, InstanceInfo]:
    labels = mask.astype(np.int32)
    voxels = np.argwhere(mask)
    info = InstanceInfo(1, np.asarray(prompt, float), "ok", voxels=len(voxels), centroid=voxels.mean(axis=0),
                        bbox=(*voxels.min(axis=0), *(voxels.max(axis=0) + 1)))
    return labels, info


def test_a_mask_that_ran_into_a_neighbour_is_cut_back_to_the_clicked_lobe():
    shape = (30, 30, 60)
    clicked, neighbour = blob(shape, (15, 15, 15), 6) > 0, blob(shape, (15, 15, 40), 8) > 0
    neck = np.zeros(shape, bool)
    neck[14:17, 14:17, 15:40] = True
    labels, info = _instance(clicked | neighbour | neck, (15, 15, 15))
    assert is_leaked(info)
    leak = repair_leak(labels, info, 1)
    assert leak is not None and leak.kept_voxels == info.voxels < leak.voxels
    kept = labels == 1
    assert np.count_nonzero(kept & clicked) / np.count_nonzero(kept | clicked) > 0.85
    assert np.allclose(info.centroid, (15, 15, 15), atol=1.0) and "prompt 1" in leak.describe()


@pytest.mark.parametrize("click", [(16, 14, 15), (15, 15, 20)])  # a voxel off-centre; on the rim
def test_a_mask_on_its_own_particle_is_left_alone(click):
    shape = (30, 30, 30)
    labels, info = _instance(blob(shape, (15, 15, 15), 6) > 0, click)
    before = labels.copy()
    assert repair_leak(labels, info, 1) is None
    assert np.array_equal(labels, before) and info.voxels == np.count_nonzero(before)
