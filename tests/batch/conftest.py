"""Four small simulated tomograms (one ribosome kind) and the query of a pick on the first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Dataset:
    folder: Path
    tomograms: list[Path]
    sims: list
    query: Path


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Dataset:
    import cryoseg
    from cryoseg.synth import SimulationConfig, simulate

    folder = tmp_path_factory.mktemp("dataset")
    sims, paths = [], []
    for seed in range(1, 5):
        sim = simulate(SimulationConfig(shape=(56, 72, 72), seed=seed, templates=("ribosome",), particles=4,
                                        vesicles=0, filaments=0, threads=1))
        paths.append(sim.save(folder / f"TS_{seed:02d}")["tomogram"])
        sims.append(sim)
    result = cryoseg.pick(sims[0].tomogram, sims[0].particles.coords[:1])
    query = result.query.save(folder / "query.npz")
    return Dataset(folder, paths, sims, query)
