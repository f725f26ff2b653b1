"""LoG blob picking finds blobs of the given size, with the right polarity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.baselines import LoGConfig, estimate_polarity, log_blobs
from cryoseg.errors import InputError

CENTRES = np.array([(12, 12, 12), (12, 40, 30), (30, 20, 44), (34, 44, 14), (22, 30, 28)], float)


def _volume(sign, radius=5, seed=0):
    rng = np.random.default_rng(seed)
    volume = ndimage.gaussian_filter(rng.normal(size=(44, 56, 56)), 1.0).astype(np.float32)
    zz, yy, xx = np.ogrid[:44, :56, :56]
    for c in CENTRES:
        volume[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2] += sign * 1.0
    return volume


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_log_finds_blobs_of_the_right_size_and_polarity(sign):
    volume = _volume(sign)
    assert estimate_polarity(volume, 5) == ("dark" if sign < 0 else "bright")
    picks = log_blobs(volume, 5.0)
    assert len(picks) >= len(CENTRES)
    top = picks.coords[: len(CENTRES)]
    d = np.linalg.norm(top[:, None] - CENTRES[None], axis=2)
    assert np.all(d.min(axis=1) <= 1.5)
    assert sorted(d.argmin(axis=1).tolist()) == list(range(len(CENTRES)))  # each blob found once
    assert np.all(np.diff(picks.scores) <= 0)
    # Below the planted blobs only noise passes the threshold: well under half their score.
    assert np.all(picks.scores[len(CENTRES):] < 0.5 * picks.scores[len(CENTRES) - 1])

    # The wrong polarity looks for the opposite contrast: not one of its local maxima, at any score, lies on a
    # planted blob, and the few that pass the threshold score far below the blobs.
    wrong_polarity = "bright" if sign < 0 else "dark"
    every_peak = log_blobs(volume, 5.0, LoGConfig(polarity=wrong_polarity, threshold=-np.inf))
    assert len(every_peak) > 50
    dw = np.linalg.norm(every_peak.coords[:, None] - CENTRES[None], axis=2)
    assert dw.min() > 5.0  # farther than a blob's radius from every blob
    wrong = log_blobs(volume, 5.0, LoGConfig(polarity=wrong_polarity))
    assert np.all(wrong.scores < 0.5 * picks.scores[len(CENTRES) - 1])


def test_slabs_give_the_picks_of_the_whole_volume():
    """A tomogram larger than memory is filtered slab by slab; thin slabs (8 planes plus margins) change nothing."""
    volume = _volume(-1.0)
    whole = log_blobs(volume, 5.0, LoGConfig(threshold=-np.inf))
    slabs = log_blobs(volume, 5.0, LoGConfig(threshold=-np.inf), slab_voxels=5 * 56 * 56)
    assert len(whole) > 50
    np.testing.assert_array_equal(slabs.coords, whole.coords)
    np.testing.assert_allclose(slabs.scores, whole.scores, rtol=1e-6)


def test_log_prefers_the_particle_scale():
    """Blobs of radius 5 respond more at radius 5 than a detector tuned to radius 1.5 (noise scale)."""
    volume = _volume(1.0)
    right = log_blobs(volume, 5.0, LoGConfig(polarity="bright"))
    small = log_blobs(volume, 1.5, LoGConfig(polarity="bright", top_k=len(CENTRES)))
    assert len(right) >= len(CENTRES) and len(small) == len(CENTRES)  # so `_hits` counts real picks
    assert _hits(right) == len(CENTRES)
    assert _hits(small) < len(CENTRES)
    assert right.scores[: len(CENTRES)].min() > small.scores.max()


def _hits(picks) -> int:
    """How many of the top len(CENTRES) picks lie within 1.5 voxels of a planted blob."""
    d = np.linalg.norm(picks.coords[: len(CENTRES), None] - CENTRES[None], axis=2)
    return int(np.sum(d.min(axis=1) <= 1.5))


def test_log_bad_input():
    with pytest.raises(InputError, match="radius"):
        log_blobs(np.zeros((8, 8, 8)), 0.0)
    with pytest.raises(InputError, match="3D"):
        log_blobs(np.zeros((8, 8)), 2.0)
    with pytest.raises(InputError, match="polarity"):
        LoGConfig(polarity="up")
