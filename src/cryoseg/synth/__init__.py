"""Tomogram simulator with exact ground truth: templates, placement, membranes, tilt series, CTF, noise, WBP.

    from cryoseg.synth import SimulationConfig, simulate
    sim = simulate(SimulationConfig(shape=(64, 96, 96), seed=1))
    sim.save("out/")
"""

from .config import DEFAULT_TEMPLATES, SimulationConfig
from .simulate import Simulation, simulate
from .templates import BUILTIN_SHAPES, Template, load_templates

__all__ = ["BUILTIN_SHAPES", "DEFAULT_TEMPLATES", "Simulation", "SimulationConfig", "Template", "load_templates",
           "simulate"]
