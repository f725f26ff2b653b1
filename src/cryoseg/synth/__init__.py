"""Tomogram simulator with exact ground truth: templates, placement, membranes, tilt series, CTF, noise, WBP.

    from cryoseg.synth import SimulationConfig, simulate
    sim = simulate(SimulationConfig(shape=(64, 96, 96), seed=1))
    sim.save("out/")

Exports load on first use: the CLI quotes the config's defaults in its help without loading scipy.
"""

from ..lazy import lazy_exports

_EXPORTS = {"DEFAULT_TEMPLATES": "config", "SimulationConfig": "config", "Simulation": "simulator",
            "simulate": "simulator", "BUILTIN_SHAPES": "templates", "Template": "templates",
            "load_templates": "templates"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
