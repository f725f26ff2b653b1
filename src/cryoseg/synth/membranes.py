"""Vesicles with a lipid-bilayer profile (spheres and ellipsoids) and straight filaments (tubes).

Geometry is in voxels, (z, y, x). Rendering adds density to a (Z, Y, X) float array and writes the class
label and instance id where the structure is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .config import SimulationConfig
from .rotation import random_rotations, zyx_matrix

MEMBRANE_LABEL = 1


@dataclass
class Vesicle:
    """An ellipsoidal bilayer. `axes` are semi-axes (z, y, x) in voxels before `rotation` (3, 3) on z, y, x."""

    center: np.ndarray
    axes: np.ndarray
    rotation: np.ndarray
    bound: float  # radius (voxels) of a sphere that holds the whole membrane


@dataclass
class Filament:
    """A straight tube through `point` along the unit `direction` (z, y, x); radii in voxels."""

    point: np.ndarray
    direction: np.ndarray
    radius: float
    inner_radius: float


@dataclass(frozen=True)
class BilayerProfile:
    """Two Gaussian leaflets at ±half_gap voxels from the mid-plane; membrane label within ±half_width."""

    half_gap: float
    sigma: float
    half_width: float
    contrast: float

    @classmethod
    def from_config(cls, config: SimulationConfig) -> BilayerProfile:
        vs = config.voxel_size
        # the voxel grid blurs the leaflets further: add a box-sampling variance of one voxel
        sigma = math.sqrt(config.leaflet_sigma ** 2 + vs ** 2 / 12.0) / vs
        half_width = max((config.bilayer_thickness / 2 + config.leaflet_sigma) / vs, 0.75)
        return cls(config.bilayer_thickness / 2 / vs, sigma, half_width, config.membrane_contrast)

    @property
    def reach(self) -> float:
        """Voxels from the mid-plane beyond which the membrane adds nothing."""
        return max(self.half_gap + 3.0 * self.sigma, self.half_width) + 1.0

    def density(self, d: np.ndarray) -> np.ndarray:
        """Bilayer density at signed distances `d` (voxels) from the mid-plane."""
        g = 0.5 / self.sigma ** 2
        return self.contrast * (np.exp(-g * (d - self.half_gap) ** 2) + np.exp(-g * (d + self.half_gap) ** 2))


def vesicle_radius_range(config: SimulationConfig, profile: BilayerProfile) -> tuple[float, float]:
    """(min, max) vesicle radius in voxels: `config.vesicle_radius`, capped so a vesicle fits the volume
    (`build_scene` logs the capping).

    Raises:
        InputError: not even a vesicle of 4 voxels radius fits.
    """
    fit = min(config.shape) / 2 - profile.reach - 1.0
    lo, hi = (r / config.voxel_size for r in config.vesicle_radius)
    if fit < 4.0:
        raise InputError(f"no vesicle fits in a volume of shape {config.shape}; "
                         "ask for no vesicles (--vesicles 0) or a larger volume")
    return min(lo, fit), min(hi, fit)


def draw_vesicle(config: SimulationConfig, profile: BilayerProfile, rng: np.random.Generator,
                 radius_range: tuple[float, float]) -> Vesicle:
    """A vesicle's size (radius in voxels from `radius_range`), shape and orientation (centre set when placed)."""
    radius = rng.uniform(*radius_range)
    axes = np.full(3, radius)
    if rng.random() < config.ellipsoid_fraction:
        axes[1:] = radius / rng.uniform(1.0, config.max_elongation, size=2)
    rotation = zyx_matrix(random_rotations(1, rng)[0])
    return Vesicle(center=np.zeros(3), axes=axes, rotation=rotation, bound=float(axes.max()) + profile.reach)


def ellipsoid_distance(points: np.ndarray, vesicle: Vesicle) -> np.ndarray:
    """Approximate signed distance (voxels, negative inside) from points (..., 3) z, y, x to the ellipsoid."""
    u = (points - vesicle.center) @ vesicle.rotation  # into the ellipsoid's own frame
    scaled = u / vesicle.axes
    q = np.sqrt((scaled ** 2).sum(axis=-1))
    grad = np.sqrt(((scaled / vesicle.axes) ** 2).sum(axis=-1))
    # first-order (q - 1) / |grad q|; exact for spheres
    return (q - 1.0) * q / np.maximum(grad, 1e-12)


def _box(center: np.ndarray, reach: float, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    lo = np.maximum(np.floor(center - reach).astype(int), 0)
    hi = np.minimum(np.ceil(center + reach).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def render_vesicle(vesicle: Vesicle, profile: BilayerProfile, density: np.ndarray, labels: np.ndarray,
                   instances: np.ndarray, instance_id: int) -> None:
    """Add one vesicle's bilayer to `density` and mark its membrane in `labels` and `instances` (all Z, Y, X)."""
    box = _box(vesicle.center, vesicle.bound, density.shape)
    if box is None:
        return
    grid = np.stack(np.meshgrid(*(np.arange(s.start, s.stop, dtype=np.float32) for s in box), indexing="ij"), -1)
    d = ellipsoid_distance(grid, vesicle).astype(np.float32)
    density[box] += profile.density(d).astype(np.float32)
    membrane = np.abs(d) <= profile.half_width
    labels[box][membrane] = MEMBRANE_LABEL
    instances[box][membrane] = instance_id


def draw_filament(config: SimulationConfig, rng: np.random.Generator, max_elevation: float = 20.0) -> Filament:
    """A filament through the central half of the volume, nearly parallel to the slab (|elevation| <= 20°)."""
    shape = np.asarray(config.shape, dtype=np.float64)
    point = (shape - 1) / 2 + (rng.random(3) - 0.5) * shape / 2
    azimuth = rng.uniform(0.0, np.pi)
    elevation = np.deg2rad(rng.uniform(-max_elevation, max_elevation))
    direction = np.array([np.sin(elevation), np.cos(elevation) * np.sin(azimuth), np.cos(elevation) * np.cos(azimuth)])
    radius = config.filament_radius / config.voxel_size
    inner = max(radius - config.filament_wall / config.voxel_size, 0.0)
    return Filament(point=point, direction=direction, radius=radius, inner_radius=inner)


def filament_segment(filament: Filament, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """End points (z, y, x) of the filament's axis, long enough to cross the whole volume."""
    half_length = float(np.linalg.norm(shape))
    return filament.point - half_length * filament.direction, filament.point + half_length * filament.direction


def render_filament(filament: Filament, density: np.ndarray, labels: np.ndarray, instances: np.ndarray,
                    label: int, instance_id: int, slab: int = 8) -> None:
    """Add a tube's density (soft one-voxel edges) to `density` and mark its wall in `labels`/`instances` (Z, Y, X)."""
    shape = density.shape
    yy, xx = np.meshgrid(np.arange(shape[1], dtype=np.float32), np.arange(shape[2], dtype=np.float32), indexing="ij")
    u = filament.direction.astype(np.float32)
    p0 = filament.point.astype(np.float32)
    outer, inner = filament.radius, filament.inner_radius
    for z0 in range(0, shape[0], slab):
        z = np.arange(z0, min(z0 + slab, shape[0]), dtype=np.float32)[:, None, None]
        rel = (z - p0[0], yy[None] - p0[1], xx[None] - p0[2])
        along = rel[0] * u[0] + rel[1] * u[1] + rel[2] * u[2]
        r = np.sqrt(np.maximum(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2 - along ** 2, 0.0))
        value = np.clip(0.5 - (r - outer), 0.0, 1.0)
        if inner > 0:
            value *= np.clip(0.5 + (r - inner), 0.0, 1.0)
        if not np.any(value):
            continue
        sl = slice(z0, z0 + len(z))
        density[sl] += value
        wall = value >= 0.5
        labels[sl][wall] = label
        instances[sl][wall] = instance_id
