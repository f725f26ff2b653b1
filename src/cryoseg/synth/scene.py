"""Where everything goes: filaments, then vesicles, then particles (largest first), none overlapping."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from .config import REFERENCE_COUNTS, REFERENCE_SHAPE, SimulationConfig
from .membranes import (
    BilayerProfile,
    Filament,
    Vesicle,
    draw_filament,
    draw_vesicle,
    filament_segment,
    vesicle_radius_range,
)
from .placement import MAX_PACKING_FRACTION, Packer, segment_distance, sphere_volume
from .rotation import random_rotations
from .templates import Template

logger = logging.getLogger(__name__)

# In a volume smaller than 128³, default (None) vesicle and filament counts are lowered until the objects need at
# most this fraction of it (the default 128³ tomogram needs about 25 % with vesicles of mean size); random
# placement cannot go past MAX_PACKING_FRACTION.
DEFAULT_FILL_FRACTION = 0.3
_AGAIN = ("ask for fewer particles (--particles), vesicles (--vesicles) or filaments (--filaments), "
          "or a larger volume")


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


def resolve_counts(config: SimulationConfig, templates: list[Template]) -> SimulationConfig:
    """A copy of `config` with `particles`, `vesicles` and `filaments` set.

    Those left None get `config.default_counts()`. In a volume smaller than 128³, default particles are raised
    to one per class where that fits, and default filaments, then vesicles (never ones the user set), are
    dropped while the objects, vesicles at their largest, would need more than DEFAULT_FILL_FRACTION of it.
    """
    counts = config.default_counts()
    auto = [name for name in REFERENCE_COUNTS if getattr(config, name) is None]
    if config.density is not None or config.particles_per_class is not None:
        auto = [name for name in auto if name != "particles"]  # those decide the particle counts
    resolved = replace(config, **counts)
    if not auto or math.prod(config.shape) >= math.prod(REFERENCE_SHAPE):
        return resolved  # the reference counts, as they always were, for the default size and above
    profile = BilayerProfile.from_config(resolved)
    if "particles" in auto and counts["particles"] < len(templates):
        # one of each class where that fits: a class missing from the ground truth would look like a bug
        alone = replace(resolved, particles=len(templates), vesicles=0, filaments=0)
        if _needed_fraction(alone, templates, alone.class_counts(len(templates)), profile) <= DEFAULT_FILL_FRACTION:
            counts["particles"] = len(templates)
            resolved = replace(resolved, particles=counts["particles"])
    per_class = resolved.class_counts(len(templates))
    if "vesicles" in auto and counts["vesicles"]:
        try:
            vesicle_radius_range(resolved, profile)
        except InputError:  # too thin for any vesicle: the default is none
            counts["vesicles"] = 0
            resolved = replace(resolved, vesicles=0)
    for name in ("filaments", "vesicles"):
        while name in auto and counts[name] and _needed_fraction(resolved, templates, per_class, profile,
                                                                 largest=True) > DEFAULT_FILL_FRACTION:
            counts[name] -= 1
            resolved = replace(resolved, **{name: counts[name]})
    if any(counts[name] != REFERENCE_COUNTS[name] for name in auto):
        chosen = ", ".join(f"{counts[name]} {name}" for name in auto)
        logger.info("default counts fitted to a volume of shape %s: %s", config.shape, chosen)
    return resolved


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
                             "without crossing another; ask for fewer filaments (--filaments) or a larger volume")

    vesicles = []
    radius_range = vesicle_radius_range(config, profile) if config.vesicles else (0.0, 0.0)
    if config.vesicles and radius_range[1] < config.vesicle_radius[1] / config.voxel_size:
        logger.info("vesicle radius capped at %.0f Å (asked up to %.0f Å) to fit a volume of shape %s",
                    radius_range[1] * config.voxel_size, config.vesicle_radius[1], shape)
    for i in range(config.vesicles):
        vesicle = draw_vesicle(config, profile, rngs["vesicles"], radius_range)
        center = packer.place(vesicle.bound, rngs["vesicles"])
        if center is None:
            raise InputError(f"could not fit vesicle {i + 1} of {config.vesicles} (radius {vesicle.bound:.0f} voxels) "
                             f"into a volume of shape {shape}; ask for fewer (--vesicles) or smaller vesicles or a "
                             "larger volume")
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
                    f"{sum(counts)} particles, {config.vesicles} vesicles and {config.filaments} filaments; {_AGAIN}")
            centers[starts[k] + j] = center
            class_index[starts[k] + j] = k
    rotations = random_rotations(len(centers), rngs["rotations"])
    return Scene(centers, class_index, rotations, vesicles, filaments)


def _clear_of_capsules(packer: Packer, a: np.ndarray, b: np.ndarray, radius: float) -> bool:
    """Whether the tube of `radius` around segment a-b keeps clear of the tubes already placed."""
    samples = a + np.linspace(0.0, 1.0, int(np.linalg.norm(b - a)) + 2)[:, None] * (b - a)
    return all(np.min(segment_distance(samples, p, q)) >= r + radius for p, q, r in packer.capsules)


def _needed_fraction(config: SimulationConfig, templates: list[Template], counts: list[int],
                     profile: BilayerProfile, largest: bool = False) -> float:
    """Fraction of the volume the bounding spheres and tubes of all objects would take, with vesicles of the
    mean radius, or of the largest radius they may draw when `largest` (a bound that placement reliably meets)."""
    shape = np.asarray(config.shape, dtype=np.float64)
    needed = sum(count * sphere_volume(template.radius) for template, count in zip(templates, counts))
    if config.vesicles:
        lo, hi = vesicle_radius_range(config, profile)
        needed += config.vesicles * sphere_volume((hi if largest else (lo + hi) / 2) + profile.reach)
    if config.filaments:
        r = config.filament_radius / config.voxel_size
        needed += config.filaments * math.pi * r * r * float(np.linalg.norm(shape[1:]))
    return needed / float(np.prod(shape))


def _check_capacity(config: SimulationConfig, templates: list[Template], counts: list[int],
                    profile: BilayerProfile) -> None:
    """Refuse at once what cannot fit: an object larger than the volume, or too much total volume."""
    shape = np.asarray(config.shape, dtype=np.float64)
    for template, count in zip(templates, counts):
        if count and 2 * template.radius > shape.min():
            raise InputError(f"particle class '{template.name}' ({2 * template.radius:.0f} voxels across) does not fit "
                             f"in a volume of shape {config.shape}; use a larger volume or voxel size (--shape, "
                             "--voxel-size) or other templates (--templates)")
    needed = _needed_fraction(config, templates, counts, profile)
    if needed > MAX_PACKING_FRACTION:
        raise InputError(f"{sum(counts)} particles, {config.vesicles} vesicles and {config.filaments} filaments need "
                         f"about {needed:.0%} of a volume of shape {config.shape}, more than non-overlapping random "
                         f"placement can reach ({MAX_PACKING_FRACTION:.0%}); {_AGAIN}")
