"""Non-overlapping placement of spheres (particles, vesicles) among straight tubes (filaments).

Objects are bounded by spheres or capsules (segment plus radius) in voxel units. Candidates are drawn in
batches and checked against everything placed so far with vectorised distances; this is fast for the few
thousand objects a tomogram holds.
"""

from __future__ import annotations

import math

import numpy as np

# random sequential addition of spheres jams near 38 % volume fraction; beyond this it cannot work
MAX_PACKING_FRACTION = 0.38


class Packer:
    """Keeps the bounding spheres and capsules placed so far in a volume of `shape` (z, y, x voxels)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.shape = np.asarray(shape, dtype=np.float64)
        self._centers = np.zeros((0, 3))
        self._radii = np.zeros(0)
        self._segments: list[tuple[np.ndarray, np.ndarray, float]] = []

    def add_sphere(self, center: np.ndarray, radius: float) -> None:
        self._centers = np.vstack([self._centers, np.asarray(center, dtype=np.float64)[None]])
        self._radii = np.append(self._radii, float(radius))

    def add_capsule(self, a: np.ndarray, b: np.ndarray, radius: float) -> None:
        """A straight tube of `radius` voxels around the segment from `a` to `b` (z, y, x voxels)."""
        self._segments.append((np.asarray(a, np.float64), np.asarray(b, np.float64), float(radius)))

    @property
    def capsules(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """The tubes placed so far: (end a, end b, radius) in voxels."""
        return list(self._segments)

    def free(self, candidates: np.ndarray, radius: float) -> np.ndarray:
        """(B,) bool: which candidate centres (B, 3) keep a sphere of `radius` clear of everything placed."""
        ok = np.ones(len(candidates), dtype=bool)
        if len(self._radii):
            d2 = ((candidates[:, None, :] - self._centers[None, :, :]) ** 2).sum(axis=2)
            ok &= np.all(d2 >= (self._radii[None, :] + radius) ** 2, axis=1)
        for a, b, r in self._segments:
            ok &= segment_distance(candidates, a, b) >= r + radius
        return ok

    def place(self, radius: float, rng: np.random.Generator, margin: np.ndarray | None = None,
              batch: int = 64, max_batches: int = 200) -> np.ndarray | None:
        """Draw a free centre for a sphere of `radius` voxels, at least `margin` (z, y, x) from the faces.

        Returns:
            (3,) z, y, x float centre (also recorded as placed), or None when none was found in
            `batch * max_batches` tries.
        """
        margin = np.full(3, radius) if margin is None else np.asarray(margin, dtype=np.float64)
        lo = margin - 0.5
        hi = self.shape - 0.5 - margin
        if np.any(hi < lo):
            return None
        for _ in range(max_batches):
            candidates = lo + rng.random((batch, 3)) * (hi - lo)
            ok = np.flatnonzero(self.free(candidates, radius))
            if ok.size:
                center = candidates[ok[0]]
                self.add_sphere(center, radius)
                return center
        return None


def segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) distance from points (N, 3) to the segment from `a` to `b` (3,), all in the same units."""
    ab = b - a
    h = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - a - h[:, None] * ab, axis=1)


def sphere_volume(radius: float) -> float:
    return 4.0 / 3.0 * math.pi * radius ** 3
