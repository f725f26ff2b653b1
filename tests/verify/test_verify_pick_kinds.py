"""End to end: one prompt picks its own kind and not another kind of the same volume but a different shape, and a
prompted mask that leaks into a neighbour is caught."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import cryoseg
from cryoseg.eval import match_picks
from cryoseg.io import Particles

SHAPE = (40, 96, 96)


def _rod(grid: np.ndarray, centre: np.ndarray, axis: np.ndarray) -> np.ndarray:
    d = grid - centre
    along = d @ axis
    return (np.abs(along) <= 6) & (np.linalg.norm(d - along[:, None] * axis, axis=1) <= 2.2)


@pytest.fixture(scope="module")
def two_kinds():
    """Rods (length 12, radius 2.2, random orientations) and balls of the same volume (radius 3.9), dark on a
    noisy background: (tomogram (Z, Y, X), rod centres (6, 3), ball centres (6, 3))."""
    rng = np.random.default_rng(3)
    grid = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    slots = [np.array([z, y, x], float) for z in (12, 28) for y in (16, 40, 64, 86)[:3] for x in (14, 38, 62, 84)]
    order = rng.permutation(len(slots))
    rods, balls = [slots[i] for i in order[:6]], [slots[i] for i in order[6:12]]
    density = np.zeros(len(grid), bool)
    for c in rods:
        axis = rng.normal(size=3)
        density |= _rod(grid, c, axis / np.linalg.norm(axis))
    for c in balls:
        density |= np.linalg.norm(grid - c, axis=1) <= 3.9
    volume = -ndimage.gaussian_filter(density.reshape(SHAPE).astype(np.float32), 0.8)
    volume += rng.normal(0, 0.2, SHAPE).astype(np.float32)
    return volume, np.array(rods), np.array(balls)


@pytest.mark.parametrize("prompted", ["rods", "balls"])
def test_one_prompt_does_not_pick_the_other_kind_of_the_same_volume(two_kinds, prompted):
    volume, rods, balls = two_kinds
    mine, other = (rods, balls) if prompted == "rods" else (balls, rods)
    result = cryoseg.pick(volume, mine[:1])
    found = result.particles.coords[~result.is_prompt]
    assert match_picks(Particles(found), Particles(other), tolerance=3.0).tp == 0  # no pick on the other kind
    assert match_picks(Particles(found), Particles(mine[1:]), tolerance=3.0).recall >= 0.8
    # the written scores rank the picks above every candidate of the other kind
    v = result.verification
    on_other = np.min(np.linalg.norm(v.centre[:, None] - other[None], axis=2), axis=1) <= 3.0
    assert on_other.any() and v.score[on_other].max() < v.cut.value <= result.score[~result.is_prompt].min()


def test_a_leaked_prompt_is_caught_and_the_pick_still_finds_its_kind(two_kinds, caplog):
    volume, rods, balls = two_kinds
    # a dark bar from the prompted ball to its nearest neighbour: the prompt's mask runs along it into that one
    near = 1 + int(np.argmin(np.linalg.norm(balls[1:] - balls[0], axis=1)))
    bar = np.zeros(SHAPE, bool)
    for t in np.linspace(0, 1, 100):
        bar[tuple(np.round(balls[0] + t * (balls[near] - balls[0])).astype(int))] = True
    bridged = np.where(ndimage.binary_dilation(bar, iterations=1), volume.min(), volume)
    with caplog.at_level("WARNING", logger="cryoseg"):
        result = cryoseg.pick(bridged, balls[:1])
    assert len(result.leaks) == 1 and "prompt 1's mask ran into a neighbour" in caplog.text
    prompted = result.instances.data == result.particles.instance_ids[0]
    # cut back to the clicked ball (with a stub of the bar): less than half of what leaked, centred on the ball
    assert result.leaks[0].kept_voxels == prompted.sum() < result.leaks[0].voxels / 2
    assert np.linalg.norm(np.argwhere(prompted).mean(axis=0) - balls[0]) < 2.5
    found = result.particles.coords[~result.is_prompt]
    others = np.delete(balls, [0, near], axis=0)
    assert match_picks(Particles(found), Particles(others), tolerance=3.0).recall >= 0.75
