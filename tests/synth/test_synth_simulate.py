"""Whole simulations: determinism, non-overlap, ground truth consistent with the particle table and density."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from cryoseg.progress import progress_enabled, set_progress_enabled
from cryoseg.synth import SimulationConfig, simulate
from cryoseg.synth.templates import load_templates


@pytest.fixture(autouse=True)
def _no_progress_bars():
    before = progress_enabled()
    set_progress_enabled(False)
    yield
    set_progress_enabled(before)

SMALL = dict(shape=(48, 96, 96), particles=6, vesicles=1, filaments=1, vesicle_radius=(80.0, 120.0),
             filament_radius=40.0, filament_wall=40.0)


@pytest.fixture(scope="module")
def sim():
    return simulate(SimulationConfig(seed=7, **SMALL))


def test_same_seed_gives_identical_output_whatever_the_threads(sim):
    again = simulate(SimulationConfig(seed=7, threads=1, **SMALL))
    assert again.tomogram.data.tobytes() == sim.tomogram.data.tobytes()
    assert np.array_equal(again.labels.data, sim.labels.data)
    assert np.array_equal(again.instances.data, sim.instances.data)
    assert np.array_equal(again.particles.coords, sim.particles.coords)
    assert np.array_equal(again.particles.orientations, sim.particles.orientations)


def test_different_seed_gives_a_different_tomogram(sim):
    other = simulate(SimulationConfig(seed=8, **SMALL))
    assert not np.allclose(other.particles.coords, sim.particles.coords)
    assert np.abs(other.tomogram.data - sim.tomogram.data).mean() > 0.1


def test_noise_switch_leaves_the_scene_unchanged(sim):
    clean = simulate(SimulationConfig(seed=7, noise=False, **SMALL))
    assert np.array_equal(clean.labels.data, sim.labels.data)
    assert np.array_equal(clean.particles.coords, sim.particles.coords)
    # and without noise the tomogram follows the (dark) density much more closely
    d = sim.density.data.ravel()
    corr = lambda t: np.corrcoef(t.ravel(), d)[0, 1]  # noqa: E731
    assert corr(clean.tomogram.data) < corr(sim.tomogram.data) < -0.05


def test_volumes_metadata_and_counts(sim):
    assert sim.tomogram.shape == sim.labels.shape == sim.instances.shape == (48, 96, 96)
    assert sim.tomogram.voxel_size == (10.0, 10.0, 10.0)
    assert sim.tomogram.data.dtype == np.float32 and sim.tomogram.data.flags.c_contiguous
    assert sim.tomogram.data.mean() == pytest.approx(0.0, abs=1e-4)
    assert sim.tomogram.data.std() == pytest.approx(1.0, abs=1e-3)
    assert sim.instances.data.dtype == np.int32
    assert sim.label_names == {0: "background", 1: "membrane", 2: "ribosome", 3: "shell", 4: "dumbbell",
                               5: "filament"}
    assert np.bincount(sim.particles.classes, minlength=5)[2:].tolist() == [2, 2, 2]
    assert sim.particles.class_names == {2: "ribosome", 3: "shell", 4: "dumbbell"}
    assert set(np.unique(sim.labels.data)) == set(sim.label_names)
    assert len(sim.tilt_angles) == 41 and sim.tilt_angles[0] == -60.0 and sim.tilt_angles[-1] == 60.0


def test_particles_do_not_overlap(sim):
    radius = {t["label"]: t["radius_voxels"] for t in sim.info["templates"]}
    r = np.array([radius[c] for c in sim.particles.classes])
    c = sim.particles.coords
    d = np.linalg.norm(c[:, None] - c[None], axis=2)
    off = ~np.eye(len(c), dtype=bool)
    assert np.all(d[off] >= (r[:, None] + r[None])[off])
    # no particle's mask was partly overwritten by another object: each is one connected piece of full size
    for i in range(len(c)):
        piece = sim.instances.data == i + 1
        assert ndimage.label(piece)[1] == 1


def test_labels_and_instances_agree_with_the_table(sim):
    labels, instances = sim.labels.data, sim.instances.data
    assert np.array_equal(labels > 0, instances > 0)
    n = len(sim.particles)
    assert sim.particles.instance_ids.tolist() == list(range(1, n + 1))
    for i, (center, cls) in enumerate(zip(sim.particles.coords, sim.particles.classes)):
        voxel = tuple(np.round(center).astype(int))
        assert instances[voxel] == i + 1 and labels[voxel] == cls  # the centre lies in its own particle
        assert set(np.unique(labels[instances == i + 1])) == {cls}
    vesicle_ids = [v["instance"] for v in sim.info["vesicles"]]
    filament_ids = [f["instance"] for f in sim.info["filaments"]]
    assert vesicle_ids == [n + 1] and filament_ids == [n + 2]
    assert set(np.unique(labels[instances == n + 1])) == {1}
    assert set(np.unique(labels[instances == n + 2])) == {5}
    assert instances.max() == n + 2


def test_vesicle_membrane_is_a_bilayer_shell(sim):
    vesicle = sim.info["vesicles"][0]
    membrane = sim.instances.data == vesicle["instance"]
    center = np.asarray(vesicle["center_zyx"])
    assert not membrane[tuple(np.round(center).astype(int))]  # hollow: the lumen is not membrane
    axes = np.asarray(vesicle["semi_axes_zyx"])
    dist = np.linalg.norm(np.argwhere(membrane) - center, axis=1)
    assert dist.min() > axes.min() - 4 and dist.max() < axes.max() + 4
    # two leaflets: along a ray from the centre the density has two peaks about 38 Å (3.8 voxels) apart
    ray = center[:, None] + np.array([0.0, 0.0, 1.0])[:, None] * np.arange(0, axes.max() + 6, 0.25)
    profile = ndimage.map_coordinates(np.asarray(sim.density.data), ray, order=1)
    peaks = np.flatnonzero((profile[1:-1] > profile[:-2]) & (profile[1:-1] >= profile[2:]) &
                           (profile[1:-1] > 0.3 * profile.max())) + 1
    assert len(peaks) == 2 and 2.5 < (peaks[1] - peaks[0]) * 0.25 < 5.5


def _rotated_template_at(template, center, angles, shape):
    """Independent rendering: particle(p) = template(R^T p), R = Rotation.from_euler('ZYZ', angles).inv() on x, y, z."""
    rot = Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()
    grid = np.indices(shape).reshape(3, -1).T.astype(float) - center  # z, y, x offsets
    xyz = grid[:, ::-1] @ rot  # row-vector form of R^T p
    coords = xyz[:, ::-1].T + template.center[:, None]
    return ndimage.map_coordinates(template.density, coords, order=1, cval=0.0).reshape(shape)


def _tripod(path, voxel_size=10.0):
    """An MRC map with three arms of different lengths along +x, +y and +z: no rotation maps it onto itself."""
    import mrcfile

    zz, yy, xx = np.indices((32, 32, 32)) - 16
    arm = lambda a, b, c, length: (a >= 0) & (a <= length) & (b ** 2 + c ** 2 <= 4)  # noqa: E731
    density = (arm(xx, yy, zz, 12) | arm(yy, xx, zz, 8) | arm(zz, xx, yy, 4)).astype(np.float32)
    density = ndimage.gaussian_filter(density, 0.7)
    with mrcfile.new(path) as mrc:
        mrc.set_data(density)
        mrc.voxel_size = voxel_size
    return path


def test_density_matches_the_table_orientation_of_an_asymmetric_template(tmp_path):
    path = _tripod(tmp_path / "tripod.mrc")
    sim = simulate(SimulationConfig(shape=(40, 64, 64), templates=(str(path),), particles=3, vesicles=0,
                                    filaments=0, seed=3, noise=False))
    template = load_templates([str(path)], 10.0, 0.3)[0]
    density = np.asarray(sim.density.data)
    voxels = np.indices(density.shape).reshape(3, -1).T
    for center, angles in zip(sim.particles.coords, sim.particles.orientations):
        local = (np.linalg.norm(voxels - center, axis=1) < template.radius) & (density.ravel() > 0.05)

        def corr(a):
            expected = _rotated_template_at(template, center, a, density.shape).ravel()
            return np.corrcoef(expected[local], density.ravel()[local])[0, 1]

        assert corr(angles) > 0.99
        inverse = Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_euler("ZYZ", degrees=True)
        assert corr(inverse) < 0.9  # the opposite convention would not match
        assert corr(angles[::-1]) < 0.9  # nor would swapping rot and psi


def test_shared_template_keeps_its_orientation_in_the_tomogram(shared_data):
    import mrcfile

    path = shared_data / "templates" / "4v4r.mrc"
    raw = mrcfile.read(path).astype(np.float64)  # z, y, x as stored (mapc, mapr, maps = 1, 2, 3)
    template = load_templates([str(path)], 10.0, 0.3)[0]
    # the loaded template is the map itself, cropped: same axis order and sense
    from scipy.signal import fftconvolve

    corr = fftconvolve(raw, template.density[::-1, ::-1, ::-1].astype(np.float64), mode="valid")
    lo = np.unravel_index(np.argmax(corr), corr.shape)  # where the crop came from
    crop = raw[tuple(slice(a, a + n) for a, n in zip(lo, template.density.shape))]
    assert np.corrcoef(crop.ravel(), template.density.ravel())[0, 1] > 0.99
    assert np.corrcoef(crop.ravel(), template.density.transpose(2, 1, 0).ravel())[0, 1] < 0.95
    # and the simulator places it as the particle table says
    sim = simulate(SimulationConfig(shape=(48, 64, 96), templates=(str(path),), particles=2, vesicles=0,
                                    filaments=0, seed=5, noise=False))
    density = np.asarray(sim.density.data)
    voxels = np.indices(density.shape).reshape(3, -1).T
    for center, angles in zip(sim.particles.coords, sim.particles.orientations):
        local = np.linalg.norm(voxels - center, axis=1) < template.radius
        expected = _rotated_template_at(template, center, angles, density.shape)
        assert np.corrcoef(expected.ravel()[local], density.ravel()[local])[0, 1] > 0.99


def test_density_option_sets_particles_per_cubic_micrometre():
    config = SimulationConfig(shape=(40, 100, 100), density=2500.0, vesicles=0, filaments=0,
                              templates=("globule", "shell"))
    # 40*100*100 voxels of 1 nm^3 = 4e-4 µm^3 -> 1 per class
    assert config.class_counts(2) == [1, 1]
    sim = simulate(config)
    assert sorted(sim.particles.classes.tolist()) == [2, 3]
