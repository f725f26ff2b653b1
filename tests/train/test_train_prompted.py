"""Prompted training samples from the simulator: a start prompt's point sits at the deepest pixel of the prompted
instance's mask; a propagation step's point at the deepest pixel of its prior (the neighbouring slice's mask of the
same instance), its target may be empty past the instance's end; the same seed gives the same scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryoseg.segment3d.propagate import mask_depth
from cryoseg.train.prompted import MAX_NEGATIVES, MIN_AREA, prompted_samples
from cryoseg.train.scenes import HELD_OUT_TEMPLATES, scene_config, simulate_scene


def test_scenes_are_drawn_from_their_seed():
    a, b, c = scene_config(3), scene_config(3), scene_config(4)
    assert a == b and a != c
    assert 2 <= len(a.templates) <= 4 and -70 <= a.tilt_range[0] <= -45 and 0.2 <= a.snr <= 1.5


def test_training_scenes_never_draw_the_held_out_templates(shared_data):
    folder = shared_data / "templates"
    drawn = {Path(t).stem for k in range(40) for t in scene_config(k, templates=folder).templates}
    assert not drawn & set(HELD_OUT_TEMPLATES) and len(drawn) > 5
    held = {Path(t).stem for t in scene_config(0, templates=folder, held_out=True).templates}
    assert held == set(HELD_OUT_TEMPLATES)


def test_samples_prompt_one_instance_at_its_deepest_pixel():
    sim = simulate_scene(1, (48, 48, 48))  # three instances: room for negative points
    tomogram, instances = np.asarray(sim.tomogram.data), np.asarray(sim.instances.data)
    start = prompted_samples(tomogram, instances, np.random.default_rng(0), 6, with_prior=False)
    assert start.images.shape == (6, 48, 48) and start.priors is None
    assert start.points.shape == (6, MAX_NEGATIVES + 1, 2) and start.labels.shape == (6, MAX_NEGATIVES + 1)
    for point, target in zip(start.points[:, 0], start.targets):
        r, c = point.astype(int)
        assert target[r, c] and target.sum() >= MIN_AREA
        # the deepest pixel: no mask pixel is farther from the background
        from scipy import ndimage

        depth = ndimage.distance_transform_edt(np.pad(target, 1))[1:-1, 1:-1]
        assert depth[r, c] == depth.max()
    steps = prompted_samples(tomogram, instances, np.random.default_rng(0), 200, with_prior=True)
    assert steps.priors.shape == steps.targets.shape
    for point, prior in zip(steps.points[:, 0], steps.priors):
        r, c = point.astype(int)
        assert prior[r, c] and mask_depth(prior)[r, c] == mask_depth(prior).max()
    overlap = [(p & t).sum() / max(1, (p | t).sum()) for p, t in zip(steps.priors, steps.targets)]
    assert np.median(overlap) > 0.3 and not all(np.array_equal(p, t) for p, t in zip(steps.priors, steps.targets))
    ends = [not t.any() for t in steps.targets]
    assert 0 < sum(ends) < len(ends) / 2  # the model sees where an instance stops, but mostly where it goes on
    # negatives sit on other instances of the slice; pads repeat the positive point with label 1
    assert (steps.labels[:, 0] == 1).all() and (steps.labels == 0).any()
    for points, labels, prior in zip(steps.points, steps.labels, steps.priors):
        for point, label in zip(points[1:], labels[1:]):
            r, c = point.astype(int)
            assert (not prior[r, c]) if label == 0 else np.array_equal(point, points[0])
    again = prompted_samples(tomogram, instances, np.random.default_rng(0), 6, with_prior=False)
    assert np.array_equal(again.points, start.points) and np.array_equal(again.targets, start.targets)


def test_added_noise_covers_smooth_and_rough_textures():
    from cryoseg.train.prompted import added_noise

    rng = np.random.default_rng(0)
    image = np.zeros((64, 64), np.float32)
    image[20:40, 20:40] = 1.0

    def neighbour_correlation(x: np.ndarray) -> float:
        x = x - image
        return float((x[:, 1:] * x[:, :-1]).mean() / x.var()) if x.any() else float("nan")

    noisy = [added_noise(image, rng) for _ in range(40)]
    unchanged = sum(np.array_equal(n, image) for n in noisy)
    assert 10 <= unchanged <= 30  # about half are left as they are
    textures = [neighbour_correlation(n) for n in noisy if not np.array_equal(n, image)]
    assert min(textures) < -0.2 and max(textures) > -0.1  # high-passed (anti-correlated) and white noise
