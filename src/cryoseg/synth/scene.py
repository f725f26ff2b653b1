"""Where everything goes: filaments, then vesicles, then particles (largest first), none overlapping."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .config import SimulationConfig
from .membranes import (BilayerProfile, Filament, Vesicle, draw_filament, draw_vesicle, filament_segment,
                        vesicle_radius_range)
from .placement import MAX_PACKING_FRACTION, Packer, segment_distance, sphere_volume
from .rotation import random_rotations
from .templates import Template


@dataclass
class Scene:
    """Object poses in voxels (z, y, x).

    Attributes:
        centers: (N, 3) particle centres.
        class_index: (N,) index into the template list of each particle.
        rotations: (N, 3, 3) template-to-particle rotations on x, y, z vectors.
        vesicles, filaments: membrane and filament geometry.
    """

    centers: np.ndarray
    class_index: np.ndarray
    rotations: np.ndarray
    vesicles: list[Vesicle] = field(default_factory=list)
    filaments: list[Filament] = field(default_factory=list)


def build_scene(config: SimulationConfig, templates: list[Template], counts: list[int],
                rngs: dict[str, np.random.Generator]) -> Scene:
    """Place `counts[i]` particles of `templates[i]`, the vesicles and the filaments of `config`.

    Args:
        rngs: independent generators "filaments", "vesicles", "particles", "rotations", so changing one kind
            of object leaves the draws of the others unchanged.

    Raises:
        InputError: the objects cannot fit in the volume without overlapping (nothing is written).
    """
    shape = config.shape
    packer = Packer(shape)
    profile = BilayerProfile.from_config(config)
    _check_capacity(config, templates, counts, profile)

    filaments = []
    for i in range(config.filaments):
        for _ in range(1000):
            filament = draw_filament(config, rngs["filaments"])
            a, b = filament_segment(filament, shape)
            if _clear_of_capsules(packer, a, b, filament.radius + 1.0):
                packer.add_capsule(a, b, filament.radius + 1.0)
                filaments.append(filament)
                break
        else:
            raise InputError(f"could not fit filament {i + 1} of {config.filaments} into a volume of shape {shape} "
                             "without crossing another; ask for fewer filaments or a larger volume")

    vesicles = []
    radius_range = vesicle_radius_range(config, profile) if config.vesicles else (0.0, 0.0)
    for i in range(config.vesicles):
        vesicle = draw_vesicle(config, profile, rngs["vesicles"], radius_range)
        center = packer.place(vesicle.bound, rngs["vesicles"])
        if center is None:
            raise InputError(f"could not fit vesicle {i + 1} of {config.vesicles} (radius {vesicle.bound:.0f} voxels) "
                             f"into a volume of shape {shape}; ask for fewer or smaller vesicles or a larger volume")
        vesicle.center = center
        vesicles.append(vesicle)

    centers = np.zeros((sum(counts), 3))
    class_index = np.zeros(sum(counts), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    # biggest first packs best; storage stays in class order
    for k in sorted(range(len(templates)), key=lambda i: -templates[i].radius):
        radius = templates[k].radius
        for j in range(counts[k]):
            center = packer.place(radius, rngs["particles"])
            if center is None:
                raise InputError(
                    f"could not fit particle {j + 1} of {counts[k]} of class '{templates[k].name}' "
                    f"(radius {radius:.1f} voxels) without overlap into a volume of shape {shape} holding "
                    f"{sum(counts)} particles, {config.vesicles} vesicles and {config.filaments} filaments; "
                    "ask for fewer particles or a larger volume")
            centers[starts[k] + j] = center
            class_index[starts[k] + j] = k
    rotations = random_rotations(len(centers), rngs["rotations"])
    return Scene(centers, class_index, rotations, vesicles, filaments)


def _clear_of_capsules(packer: Packer, a: np.ndarray, b: np.ndarray, radius: float) -> bool:
    """Whether the tube of `radius` around segment a-b keeps clear of the tubes already placed."""
    samples = a + np.linspace(0.0, 1.0, int(np.linalg.norm(b - a)) + 2)[:, None] * (b - a)
    return all(np.min(segment_distance(samples, p, q)) >= r + radius for p, q, r in packer.capsules)


def _check_capacity(config: SimulationConfig, templates: list[Template], counts: list[int],
                    profile: BilayerProfile) -> None:
    """Refuse at once what cannot fit: an object larger than the volume, or too much total volume."""
    shape = np.asarray(config.shape, dtype=np.float64)
    needed = 0.0
    for template, count in zip(templates, counts):
        if count and 2 * template.radius > shape.min():
            raise InputError(f"particle class '{template.name}' ({2 * template.radius:.0f} voxels across) does not fit "
                             f"in a volume of shape {config.shape}")
        needed += count * sphere_volume(template.radius)
    if config.vesicles:
        needed += config.vesicles * sphere_volume(np.mean(vesicle_radius_range(config, profile)) + profile.reach)
    if config.filaments:
        r = config.filament_radius / config.voxel_size
        needed += config.filaments * math.pi * r * r * float(np.linalg.norm(shape[1:]))
    capacity = MAX_PACKING_FRACTION * float(np.prod(shape))
    if needed > capacity:
        raise InputError(f"{sum(counts)} particles, {config.vesicles} vesicles and {config.filaments} filaments need "
                         f"about {needed / np.prod(shape):.0%} of a volume of shape {config.shape}, more than "
                         f"non-overlapping random placement can reach ({MAX_PACKING_FRACTION:.0%}); ask for fewer "
                         "particles or a larger volume")
