"""Exemplars: the prompted (or negative) particles as small cubes of the low-passed tomogram.

A cube holds everything the correlation ever reads around a particle, so exemplars can be saved with a query and
correlated against other tomograms, and correlating against the cube gives exactly what correlating against the
tomogram it was cut from gives (the cube's border repeats the tomogram's edge, like sampling with mode "nearest").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .correlate import Correlation, Sphere, correlate, exemplar_vectors


def cube_half(sphere: Sphere, shift: int) -> int:
    """Half-width of the cube that holds the sphere at every shift of up to `shift` voxels, and the neighbours
    linear interpolation reads."""
    return int(np.ceil(sphere.radius)) + int(shift) + 1


@dataclass(frozen=True)
class Exemplars:
    """Particles cut out of a low-passed tomogram.

    Attributes:
        cubes: (P, D, D, D) float32 subvolumes, D = 2 * half + 1.
        centres: (P, 3) z, y, x of each particle's centre inside its cube (voxels, fractional).
    """

    cubes: np.ndarray
    centres: np.ndarray

    def __len__(self) -> int:
        return len(self.cubes)

    @property
    def half(self) -> int:
        return (self.cubes.shape[-1] - 1) // 2 if len(self.cubes) else 0

    @classmethod
    def cut(cls, smooth: np.ndarray, centres: np.ndarray, half: int) -> Exemplars:
        """Cubes of half-width `half` around `centres` (P, 3) z, y, x voxels of `smooth` (Z, Y, X)."""
        centres = np.asarray(centres, np.float64).reshape(-1, 3)
        size = 2 * half + 1
        cubes = np.empty((len(centres), size, size, size), np.float32)
        corners = np.floor(centres).astype(np.int64) - half
        for p, corner in enumerate(corners):
            index = np.ix_(*(np.clip(np.arange(c, c + size), 0, n - 1) for c, n in zip(corner, smooth.shape)))
            cubes[p] = smooth[index]
        return cls(cubes, centres - corners)

    @classmethod
    def empty(cls, half: int = 0) -> Exemplars:
        size = 2 * half + 1
        return cls(np.zeros((0, size, size, size), np.float32), np.zeros((0, 3)))

    def vectors(self, sphere: Sphere, angular_step: float) -> np.ndarray:
        """(P, R, n) unit rows of each exemplar in every rotation (see `correlate.exemplar_vectors`)."""
        out = [exemplar_vectors(cube, centre[None], sphere, angular_step)[0]
               for cube, centre in zip(self.cubes, self.centres)]
        return np.stack(out) if out else np.zeros((0, 0, len(sphere.offsets)), np.float32)

    def correlate_one(self, p: int, exemplars: np.ndarray, sphere: Sphere, shift: int) -> Correlation:
        """Correlation of exemplar `p` itself (as a candidate) with `exemplars` (P', R, n)."""
        return correlate(self.cubes[p], self.centres[p:p + 1], exemplars, sphere, shift)

    def __add__(self, other: Exemplars) -> Exemplars:
        if not len(other):
            return self
        if not len(self):
            return other
        if other.half != self.half:
            raise ValueError(f"exemplar cubes of half-width {self.half} and {other.half} cannot be joined")
        return Exemplars(np.concatenate([self.cubes, other.cubes]), np.concatenate([self.centres, other.centres]))
