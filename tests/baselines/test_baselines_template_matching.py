"""Template matching: a rotated copy planted at a known position and rotation is found there."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.baselines import TemplateMatchingConfig, match_template_maps, rotation_set, template_match
from cryoseg.errors import InputError
from cryoseg.synth.rotation import euler_to_matrices, rotate_into_box


def _template(size=17):
    """Three blobs of different sizes: no rotational symmetry."""
    zz, yy, xx = np.indices((size, size, size)) - size // 2
    t = (np.exp(-(zz**2 + yy**2 + xx**2) / 8.0) + 0.8 * np.exp(-((zz - 4) ** 2 + yy**2 + (xx - 1) ** 2) / 3.0)
         + 0.6 * np.exp(-(zz**2 + (yy - 5) ** 2 + (xx + 2) ** 2) / 2.0))
    return t.astype(np.float32)


def _centre_of_mass(t):
    grid = np.indices(t.shape).reshape(3, -1)
    return (grid * t.reshape(1, -1)).sum(axis=1) / t.sum()


def _plant(volume, template, rotation, position, sign):
    box = rotate_into_box((template,), _centre_of_mass(template), rotation, np.zeros(3), 21)[0]
    z, y, x = np.asarray(position, int) - 10
    volume[z:z + 21, y:y + 21, x:x + 21] += sign * box


def test_rotation_set_is_uniform_and_contains_the_identity():
    rots = rotation_set(30.0)
    assert np.allclose(rots[0], np.eye(3))
    assert np.allclose(np.einsum("nij,nkj->nik", rots, rots), np.eye(3), atol=1e-9)
    # Every random rotation is within about the step of some sampled rotation (geodesic angle).
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    probe = Rotation.random(200, random_state=rng).as_matrix()
    cos = (np.einsum("pij,rij->pr", probe, rots) - 1) / 2
    nearest = np.degrees(np.arccos(np.clip(cos.max(axis=1), -1, 1)))
    assert nearest.max() < 30.0
    assert len(rotation_set(90.0)) < len(rots) < len(rotation_set(20.0))


@pytest.mark.parametrize("sign,polarity", [(-1.0, "auto"), (1.0, "bright")])
def test_planted_template_found_at_its_position_and_rotation(sign, polarity):
    rng = np.random.default_rng(1)
    template = _template()
    volume = rng.normal(0, 0.3, (40, 48, 52)).astype(np.float32)
    rotations = rotation_set(90.0)
    truth = [((14, 16, 15), 7), ((26, 33, 37), 13)]
    for position, r in truth:
        _plant(volume, template, rotations[r], position, sign)
    config = TemplateMatchingConfig(angular_step=90.0, polarity=polarity, slab=9)  # several slabs
    maps = match_template_maps(volume, template, config)
    assert maps.polarity == ("dark" if sign < 0 else "bright")
    for position, r in truth:
        local = maps.scores[tuple(slice(p - 3, p + 4) for p in position)]
        peak = np.add(np.unravel_index(np.argmax(local), local.shape), np.subtract(position, 3))
        assert tuple(peak) == position
        assert maps.rotation_index[position] == r
        assert maps.scores[position] > 0.3  # noise sd 0.3 against a unit-peak template
    picks = template_match(volume, template, config)
    assert len(picks) >= 2
    np.testing.assert_allclose(np.sort(picks.coords[:2], axis=0), np.sort([t[0] for t in truth], axis=0))
    # The reported orientation is the planted rotation (RELION angles round-trip to the same matrix).
    order = np.argsort(picks.coords[:2, 0])
    for (position, r), k in zip(truth, order):
        np.testing.assert_allclose(euler_to_matrices(picks.orientations[k])[0], rotations[r], atol=1e-6)


def test_slabs_do_not_change_the_scores():
    rng = np.random.default_rng(2)
    template = _template(13)
    volume = rng.normal(size=(30, 24, 26)).astype(np.float32)
    one = match_template_maps(volume, template, TemplateMatchingConfig(angular_step=120, slab=64, polarity="bright"))
    many = match_template_maps(volume, template, TemplateMatchingConfig(angular_step=120, slab=7, polarity="bright"))
    np.testing.assert_allclose(one.scores, many.scores, atol=2e-5)
    assert np.abs(one.scores).max() <= 1.0 + 1e-4  # a normalised correlation


def test_template_matching_bad_input():
    with pytest.raises(InputError, match="polarity"):
        TemplateMatchingConfig(polarity="grey")
    with pytest.raises(InputError, match="angular_step"):
        TemplateMatchingConfig(angular_step=0.1)
    with pytest.raises(InputError, match="3D"):
        template_match(np.zeros((8, 8)), _template())
    with pytest.raises(InputError, match="positive density"):
        template_match(np.zeros((20, 20, 20), np.float32), -_template())
