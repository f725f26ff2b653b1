"""Prompted training samples from the simulator: the point sits inside the prompted instance's mask (at its deepest
pixel), priors are the neighbouring slice's mask of the same instance, and the same seed gives the same scenes."""

from __future__ import annotations

import numpy as np

from cryoseg.train.prompted import MIN_AREA, prompted_samples, scene_config, simulate_scene


def test_scenes_are_drawn_from_their_seed():
    a, b, c = scene_config(3), scene_config(3), scene_config(4)
    assert a == b and a != c
    assert 2 <= len(a.templates) <= 4 and -70 <= a.tilt_range[0] <= -45 and 0.2 <= a.snr <= 1.5


def test_samples_prompt_one_instance_at_its_deepest_pixel():
    sim = simulate_scene(5, (48, 48, 48))
    tomogram, instances = np.asarray(sim.tomogram.data), np.asarray(sim.instances.data)
    start = prompted_samples(tomogram, instances, np.random.default_rng(0), 6, with_prior=False)
    assert start.images.shape == (6, 48, 48) and start.priors is None
    for point, target in zip(start.points, start.targets):
        r, c = point.astype(int)
        assert target[r, c] and target.sum() >= MIN_AREA
        # the deepest pixel: no mask pixel is farther from the background
        from scipy import ndimage

        depth = ndimage.distance_transform_edt(np.pad(target, 1))[1:-1, 1:-1]
        assert depth[r, c] == depth.max()
    steps = prompted_samples(tomogram, instances, np.random.default_rng(0), 6, with_prior=True)
    assert steps.priors.shape == steps.targets.shape
    overlap = [(p & t).sum() / (p | t).sum() for p, t in zip(steps.priors, steps.targets)]
    assert min(overlap) > 0 and not all(np.array_equal(p, t) for p, t in zip(steps.priors, steps.targets))
    again = prompted_samples(tomogram, instances, np.random.default_rng(0), 6, with_prior=False)
    assert np.array_equal(again.points, start.points) and np.array_equal(again.targets, start.targets)
