"""The filter-bank features on the simulator's tomograms: particles of one kind must look alike, and unlike
background and other kinds, which is what feature matching needs from them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg import synth
from cryoseg.models.filterbank import FilterBankExtractor


@pytest.fixture(scope="module")
def simulation():
    cfg = synth.SimulationConfig(shape=(64, 96, 96), particles=12, vesicles=0, filaments=0, seed=3, threads=1)
    return synth.simulate(cfg)


def test_each_particle_is_closer_to_its_own_kind_than_to_background_or_other_kinds(simulation):
    tomo = np.asarray(simulation.tomogram.data)
    labels = np.asarray(simulation.labels.data)
    fm = FilterBankExtractor().extract(tomo)  # every z slice: (Z, C, h, w)
    unit = fm.features / np.linalg.norm(fm.features, axis=1, keepdims=True)
    s = int(fm.stride[0])
    coords = np.round(simulation.particles.coords).astype(int)
    classes = np.asarray(simulation.particles.classes)
    assert len(np.unique(classes)) >= 2
    at_particles = np.array([unit[z, :, y // s, x // s] for z, y, x in coords])
    # background cells: every pixel of the cell more than 8 voxels from any structure
    far = ndimage.distance_transform_edt(labels == 0) > 8
    cells = far[:, : unit.shape[2] * s, : unit.shape[3] * s].reshape(labels.shape[0], unit.shape[2], s,
                                                                       unit.shape[3], s).all(axis=(2, 4))
    background = unit.transpose(0, 2, 3, 1)[cells]
    assert len(background) > 1000
    for k in range(len(coords)):
        same = classes == classes[k]
        same[k] = False  # leave the particle out of its own query
        if not same.any():
            continue
        query = at_particles[same].mean(axis=0)
        query /= np.linalg.norm(query)
        own = float(at_particles[k] @ query)
        assert own > float((at_particles[classes != classes[k]] @ query).max()), k
        assert own > float(np.percentile(background @ query, 99)), k
