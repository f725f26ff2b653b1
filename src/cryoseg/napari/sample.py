"""napari sample data: a small simulated tomogram with its exact ground truth, made on the spot (under a second)."""

from __future__ import annotations

from .layers import LayerData, points_layer, volume_layer

SAMPLE_SEED = 0


def simulated_tomogram() -> list[LayerData]:
    """The simulator's default 128³ tomogram (10 Å voxels; ribosomes, proteasomes and other complexes, vesicles, a
    filament): the tomogram, its class labels, its particle instances and the true particle centres."""
    from ..synth import SimulationConfig, simulate

    sim = simulate(SimulationConfig(seed=SAMPLE_SEED))
    tomogram = volume_layer(sim.tomogram, "simulated tomogram")
    labels = volume_layer(sim.labels, "true classes", "labels")
    labels[1]["features"] = {"index": list(sim.label_names), "class": list(sim.label_names.values())}
    instances = volume_layer(sim.instances, "true instances", "labels")
    instances[1]["visible"] = False
    truth = points_layer(sim.particles, sim.tomogram.voxel_size, sim.tomogram.origin, name="true particles")
    truth[1]["visible"] = False
    return [tomogram, labels, instances, truth]
