"""A small tomogram with known structure for the unsupervised pipeline: a dark vesicle membrane (a ring through
every slice) and dark particles (balls) on a bright background, 1 nm voxels, with noise of half the contrast (a
tomogram is never clean; on a noiseless image the standardised filter features of a flat background are
round-off)."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.io.volume import Volume

SHAPE = (8, 96, 96)
RING = ((48, 48), 30.0, 2.0)  # centre (y, x), radius, half-thickness in voxels
PARTICLES = np.array([[4, 14, 80], [4, 80, 14], [4, 84, 84]], dtype=float)  # z, y, x
PARTICLE_RADIUS = 5.5


def toy_truth(shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Y, X) membrane and particle masks of the toy tomogram."""
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    (cy, cx), radius, half = RING
    ring = np.abs(np.hypot(y - cy, x - cx) - radius) <= half
    balls = np.zeros(shape, bool)
    for pz, py, px in PARTICLES:
        balls |= (z - pz) ** 2 * 0.25 + (y - py) ** 2 + (x - px) ** 2 <= PARTICLE_RADIUS ** 2
    return ring, balls


def toy_volume(shape=SHAPE, seed: int = 0, noise: float = 0.4) -> Volume:
    ring, balls = toy_truth(shape)
    data = np.ones(shape, np.float32)
    data[ring | balls] = 0.2
    data += noise * np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return Volume(data, voxel_size=10.0)


@pytest.fixture(scope="session")
def toy():
    """`toy(seed=0, noise=0.4)` -> the toy tomogram as a `Volume` (10 Å voxels)."""
    return lambda seed=0, noise=0.4: toy_volume(seed=seed, noise=noise)


@pytest.fixture(scope="session")
def truth():
    """(membrane, particles): the toy tomogram's (Z, Y, X) bool masks."""
    return toy_truth()


@pytest.fixture(scope="session")
def true_centres() -> np.ndarray:
    """(3, 3) z, y, x centres of the toy particles."""
    return PARTICLES.copy()
