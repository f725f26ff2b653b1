"""Projection, back-projection, missing wedge, CTF and noise of the simulator's imaging model."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.progress import progress_enabled, set_progress_enabled
from cryoseg.synth.ctf import CTFParams, ctf_grid, ctf_values, electron_wavelength, first_zero
from cryoseg.synth.fourier import apply_filter, padded_shape
from cryoseg.synth.noise import add_noise, noise_sigma, signal_variance
from cryoseg.synth.reconstruct import weighted_back_projection
from cryoseg.synth.tilt import back_project, detector_width, footprints, project


@pytest.fixture(autouse=True)
def _no_progress_bars():
    before = progress_enabled()
    set_progress_enabled(False)
    yield
    set_progress_enabled(before)

SHAPE = (40, 36, 48)  # z, y, x: all different so an axis mix-up shows


def _ball(center: tuple[float, float, float], radius: float, shape=SHAPE) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    d2 = (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2
    return (d2 <= radius * radius).astype(np.float32)


def _zxy(volume: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(volume.transpose(0, 2, 1))


def _reconstruct(volume: np.ndarray, angles: np.ndarray) -> np.ndarray:
    width = detector_width(volume.shape, angles)
    images = project(_zxy(volume), angles, width, threads=2)
    padded = padded_shape((volume.shape[1], width), width)
    return weighted_back_projection(images, angles, volume.shape, padded, threads=2).transpose(0, 2, 1)


def test_projection_keeps_all_mass_at_high_tilt():
    # a voxel in a corner of the slab must stay on the detector at ±60° (the padding)
    volume = np.zeros(SHAPE, dtype=np.float32)
    volume[0, 5, 0] = 1.0
    volume[-1, 30, -1] = 2.0
    angles = np.array([-60.0, -30.0, 0.0, 45.0, 60.0])
    images = project(_zxy(volume), angles, detector_width(SHAPE, angles), threads=1)
    np.testing.assert_allclose(images.sum(axis=(1, 2)), 3.0, rtol=1e-6)
    # y is not mixed with the tilt: every image has the two voxels' rows only
    assert set(np.flatnonzero(images.sum(axis=(0, 2)))) == {5, 30}


def test_projection_at_zero_tilt_is_the_sum_along_z():
    rng = np.random.default_rng(0)
    volume = rng.random(SHAPE, dtype=np.float32)
    width = detector_width(SHAPE, np.array([0.0]))
    image = project(_zxy(volume), np.array([0.0]), width, threads=1)[0]
    start = (width - SHAPE[2]) // 2
    np.testing.assert_allclose(image[:, start:start + SHAPE[2]], volume.sum(axis=0), rtol=1e-5)


def test_back_projection_is_the_adjoint_of_projection():
    rng = np.random.default_rng(1)
    angles = np.arange(-60.0, 61.0, 15.0)
    width = detector_width(SHAPE, angles)
    volume = rng.standard_normal(SHAPE).astype(np.float32)
    images = rng.standard_normal((len(angles), SHAPE[1], width)).astype(np.float32)
    forward = project(_zxy(volume), angles, width, threads=2)
    backward = back_project(images, angles, SHAPE, np.ones(len(angles)), threads=2).transpose(0, 2, 1)
    lhs = float(np.vdot(forward.astype(np.float64), images))
    rhs = float(np.vdot(volume.astype(np.float64), backward))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_off_centre_sphere_reconstructs_at_its_true_position():
    center = (12.0, 25.0, 33.0)  # off-centre along every axis, by different amounts
    rec = _reconstruct(_ball(center, 4.0), np.arange(-60.0, 61.0, 3.0))
    peak = rec > 0.5 * rec.max()
    com = np.array([(rec * peak * a).sum() for a in np.indices(SHAPE)]) / (rec * peak).sum()
    np.testing.assert_allclose(com, center, atol=0.3)


def test_full_angular_coverage_reconstructs_the_density_value():
    ball = _ball((20.0, 18.0, 24.0), 7.0)
    rec = _reconstruct(ball, np.arange(-89.5, 90.0, 1.0))
    core = _ball((20.0, 18.0, 24.0), 4.0) > 0
    assert rec[core].mean() == pytest.approx(1.0, abs=0.1)
    assert np.abs(rec[_ball((20.0, 18.0, 24.0), 11.0) == 0]).mean() < 0.05


def test_missing_wedge_removes_power_near_the_beam_axis():
    rng = np.random.default_rng(2)
    shape = (48, 16, 48)
    noise = rng.standard_normal(shape).astype(np.float32)
    rec = _reconstruct(noise, np.arange(-60.0, 61.0, 3.0))
    power = np.abs(np.fft.fftn(rec)) ** 2
    kz = np.fft.fftfreq(shape[0])[:, None, None]
    kx = np.fft.fftfreq(shape[2])[None, None, :]
    k = np.sqrt(kz ** 2 + kx ** 2) * np.ones(shape)
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx))) * np.ones(shape)  # 0 = x axis, 90 = z (beam) axis
    band = (k > 0.1) & (k < 0.4)
    near_z = power[band & (angle > 75)].mean()
    near_x = power[band & (angle < 45)].mean()
    assert near_z < 0.02 * near_x


def test_ctf_first_zero_matches_the_analytic_position():
    # Cs = 0, no amplitude contrast: chi = pi lambda dz k^2 = pi at the first zero
    params = CTFParams(voltage=300.0, cs=0.0, defocus=2.0, amplitude_contrast=0.0)
    lam = 0.019687  # Å at 300 kV
    assert electron_wavelength(300.0) == pytest.approx(lam, rel=1e-4)
    assert first_zero(params) == pytest.approx(1.0 / np.sqrt(lam * 2.0e4), rel=1e-4)
    # with Cs and amplitude contrast: the sign changes exactly there, and nowhere before
    params = CTFParams(voltage=300.0, cs=2.7, defocus=3.0, amplitude_contrast=0.1)
    k0 = first_zero(params)
    k = np.linspace(0.0, k0 * 0.999, 2000)
    values = ctf_values(k, params)
    assert np.all(values < 0)  # density dark at low frequency
    assert ctf_values(np.array([k0 * 1.001]), params)[0] > 0
    assert abs(ctf_values(np.array([k0]), params)[0]) < 1e-6


def test_ctf_applied_to_an_image_has_its_first_zero_ring_at_the_right_radius():
    voxel_size = 5.0
    params = CTFParams(defocus=2.0)
    image = np.zeros((1, 128, 128), dtype=np.float32)
    image[0, 64, 64] = 1.0
    padded = padded_shape((128, 128), 32)
    out = apply_filter(image, ctf_grid(padded, voxel_size, params), padded, threads=1)
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(out[0])))
    yy, xx = np.indices(spectrum.shape)
    radius = np.hypot(yy - 64, xx - 64) / (128 * voxel_size)  # cycles per Å
    profile = [spectrum[np.abs(radius - r) < 0.5 / (128 * voxel_size)].mean()
               for r in np.arange(1, 50) / (128 * voxel_size)]
    k_min = (1 + int(np.argmin(profile[:40]))) / (128 * voxel_size)
    assert k_min == pytest.approx(first_zero(params), abs=1.0 / (128 * voxel_size))


def test_noise_gives_the_requested_snr_over_the_footprint():
    rng = np.random.default_rng(3)
    shape = (20, 32, 40)
    angles = np.array([-30.0, 0.0, 30.0])
    width = detector_width(shape, angles)
    images = project(_zxy(rng.random(shape, dtype=np.float32)), angles, width, threads=1)
    regions = footprints(shape, angles, width)
    # empty detector margins exist and are excluded from the signal variance
    assert all(np.all(images[i][:, : regions[i].start] == 0) for i in range(len(angles)))
    clean = images.copy()
    for snr in (0.1, 2.0):
        noisy = clean.copy()
        sigma = noise_sigma(clean, regions, snr)
        add_noise(noisy, sigma, rng)
        measured = signal_variance(clean, regions) / float(np.var(noisy - clean))
        assert measured == pytest.approx(snr, rel=0.05)
