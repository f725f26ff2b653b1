"""Rotational correlation of candidate subvolumes with exemplar subvolumes (the prompted particles).

Every exemplar is sampled, under a sphere around its centre, in `R` rotations; every candidate is sampled
under the same sphere at its centre and at small shifts. Both are normalised to zero mean and unit norm,
so one matrix product gives the normalised cross-correlation of each (candidate, shift) with each
(exemplar, rotation); a candidate's score is the maximum. This is template matching evaluated only at the
proposals, with the user's own particles as templates, so it costs seconds, not hours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..baselines.template_matching import rotation_set


@dataclass(frozen=True)
class Sphere:
    """Voxel offsets (n, 3) z, y, x of a ball of `radius` voxels around the origin."""

    radius: float
    offsets: np.ndarray

    @classmethod
    def of(cls, radius: float) -> Sphere:
        h = int(np.ceil(radius))
        grid = np.mgrid[-h:h + 1, -h:h + 1, -h:h + 1].reshape(3, -1).T
        return cls(float(radius), grid[np.sum(grid**2, axis=1) <= radius**2].astype(np.float64))


def unit_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    return (a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def rotations(angular_step: float) -> np.ndarray:
    """(R, 3, 3) rotations sampling SO(3) about `angular_step` degrees apart, acting on z, y, x vectors."""
    return rotation_set(angular_step)[:, ::-1, ::-1]  # rotation_set's act on x, y, z


def aligned_vectors(volume: np.ndarray, centres: np.ndarray, matrices: np.ndarray, sphere: Sphere) -> np.ndarray:
    """Candidates turned back into their exemplar's frame: (N, n) values at centre + M^T offset.

    A candidate that matched rotation M of an exemplar looks like the exemplar once sampled this way, so such
    vectors can be averaged with it (a cleaner template than one noisy particle).
    """
    coords = np.einsum("nji,kj->nki", matrices, sphere.offsets) + np.asarray(centres, np.float64)[:, None]
    values = ndimage.map_coordinates(volume, coords.reshape(-1, 3).T, order=1, mode="nearest")
    return values.reshape(len(centres), -1)


def exemplar_vectors(volume: np.ndarray, centres: np.ndarray, sphere: Sphere, angular_step: float) -> np.ndarray:
    """Each exemplar under the sphere in every rotation, as unit rows.

    Args:
        volume: (Z, Y, X) low-passed tomogram.
        centres: (P, 3) z, y, x voxels of the exemplars' centres.
        sphere: the correlation sphere.
        angular_step: rotation sampling in degrees.

    Returns:
        (P, R, n) float32: exemplar, rotation, voxel of the sphere.
    """
    matrices = rotations(angular_step)
    turned = np.einsum("rij,nj->rni", matrices, sphere.offsets)  # (R, n, 3)
    out = np.empty((len(centres), len(matrices), len(sphere.offsets)), np.float32)
    for p, centre in enumerate(np.asarray(centres, np.float64).reshape(-1, 3)):
        coords = (turned + centre).reshape(-1, 3).T
        values = ndimage.map_coordinates(volume, coords, order=1, mode="nearest")
        out[p] = unit_rows(values.reshape(len(matrices), -1))
    return out


def _shifts(shift: int) -> np.ndarray:
    r = np.arange(-shift, shift + 1)
    return np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)


@dataclass
class Correlation:
    """Best correlation of each candidate with the exemplars.

    Attributes:
        score: (N,) maximum normalised cross-correlation over exemplars, rotations and shifts.
        centre: (N, 3) z, y, x voxels of the candidate's centre at its best shift.
        exemplar: (N,) index of the best exemplar.
        rotation: (N,) index of the best rotation (into `rotations(angular_step)`).
    """

    score: np.ndarray
    centre: np.ndarray
    exemplar: np.ndarray
    rotation: np.ndarray


def correlate(volume: np.ndarray, points: np.ndarray, exemplars: np.ndarray, sphere: Sphere, shift: int,
              chunk_bytes: int = 1 << 26) -> Correlation:
    """Rotational correlation of candidates at `points` with `exemplars` (from `exemplar_vectors`).

    Args:
        volume: (Z, Y, X) low-passed tomogram, the one the exemplars were sampled from.
        points: (N, 3) z, y, x voxels of the candidates (rounded to voxels).
        exemplars: (P, R, n) unit rows.
        sphere: the sphere the exemplars were sampled under.
        shift: search the centre within +-shift voxels along each axis.
        chunk_bytes: bounds the correlation matrix held at once.
    """
    points = np.round(np.asarray(points, np.float64).reshape(-1, 3)).astype(np.int64)
    P, R, n = exemplars.shape
    flat = exemplars.reshape(P * R, n)
    shifts = _shifts(shift)
    S = len(shifts)
    offsets = sphere.offsets.astype(np.int64)
    Z, Y, X = volume.shape
    values_of = np.ascontiguousarray(volume, dtype=np.float32).reshape(-1)
    score, centre, best = np.full(len(points), -1.0), points.astype(np.float64), np.zeros(len(points), np.int64)
    step = max(1, chunk_bytes // (8 * S * max(P * R, n)))
    for start in range(0, len(points), step):
        block = points[start:start + step]
        at = block[:, None, :] + shifts[None]  # (b, S, 3)
        z, y, x = (np.clip(at[:, :, None, a] + offsets[None, None, :, a], 0, size - 1)
                   for a, size in enumerate((Z, Y, X)))  # each (b, S, n)
        rows = unit_rows(values_of[(z * Y + y) * X + x])
        cc = rows.reshape(-1, n) @ flat.T  # (b * S, P * R)
        flat_best = cc.argmax(axis=1)
        values = cc[np.arange(len(cc)), flat_best].reshape(len(block), S)
        s = values.argmax(axis=1)
        rows_at = np.arange(len(block))
        score[start:start + len(block)] = values[rows_at, s]
        centre[start:start + len(block)] = at[rows_at, s]
        best[start:start + len(block)] = flat_best.reshape(len(block), S)[rows_at, s]
    return Correlation(score, centre, best // R, best % R)
