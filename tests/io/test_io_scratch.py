"""Scratch arrays: small ones in memory, large ones memory-mapped from a temporary file; a pick gives the same
result either way."""

from __future__ import annotations

import numpy as np

import cryoseg
from cryoseg.io import scratch


def test_large_arrays_are_file_backed_and_zeroed():
    small = scratch.scratch_array((4, 5, 6), np.int32, threshold_bytes=1 << 20)
    large = scratch.scratch_array((40, 50, 60), np.float32, threshold_bytes=1 << 10)
    assert not isinstance(small, np.memmap) and isinstance(large, np.memmap)
    assert not small.any() and not large.any() and large.shape == (40, 50, 60) and large.dtype == np.float32
    large[3, 4, 5] = 7.5
    assert large.sum() == 7.5


def test_a_pick_on_file_backed_arrays_gives_the_same_picks(monkeypatch):
    from cryoseg.synth import SimulationConfig, simulate

    sim = simulate(SimulationConfig(shape=(48, 64, 64), seed=4, templates=("ribosome",), particles=3, vesicles=0,
                                    filaments=0, threads=1))
    in_memory = cryoseg.pick(sim.tomogram, sim.particles.coords[:1])
    monkeypatch.setattr(scratch, "SCRATCH_BYTES", 0)  # every work array goes to a file
    mapped = cryoseg.pick(sim.tomogram, sim.particles.coords[:1])
    assert isinstance(mapped.instances.data, np.memmap)
    assert len(in_memory.particles) >= 2
    np.testing.assert_allclose(mapped.particles.coords, in_memory.particles.coords)
    np.testing.assert_array_equal(np.asarray(mapped.instances.data), in_memory.instances.data)
