"""Single-axis tilt geometry (tilt about y) with a linear-interpolation projector and its adjoint.

At tilt θ a voxel (z, x) projects onto the detector coordinate t = (x - cx) cos θ + (z - cz) sin θ + ct,
the same for every y. Projection splats each voxel onto the two nearest detector pixels (linear weights),
which conserves mass; back-projection reads the detector with the same weights (the exact adjoint). Both
are one sparse matrix per angle (or per block of voxels) applied to all y at once, which is much faster
than rotating the volume. The detector is wide enough that no tilt clips the volume (the padding).

Volumes here are held as (Z, X, Y) so that (z, x) pairs are rows and y runs along contiguous columns.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..progress import track
from .parallel import ordered_map


def detector_width(shape: tuple[int, int, int], angles: np.ndarray, margin: int = 4) -> int:
    """Detector pixels along t that hold the projection of a (Z, Y, X) volume at every tilt (degrees)."""
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))
    extent = np.max(np.abs(np.cos(theta)) * (shape[2] - 1) + np.abs(np.sin(theta)) * (shape[0] - 1))
    return int(np.ceil(extent)) + 2 * margin + 1


def footprints(shape: tuple[int, int, int], angles: np.ndarray, width: int) -> list[slice]:
    """For each tilt, the detector columns (slice of t) where the volume projects."""
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))
    centre = (width - 1) / 2
    out = []
    for th in theta:
        half = (abs(np.cos(th)) * (shape[2] - 1) + abs(np.sin(th)) * (shape[0] - 1)) / 2
        out.append(slice(max(int(np.floor(centre - half)), 0), min(int(np.ceil(centre + half)) + 1, width)))
    return out


def _detector_coords(z: np.ndarray, x: np.ndarray, theta: np.ndarray, shape: tuple[int, int, int],
                     width: int) -> tuple[np.ndarray, np.ndarray]:
    """Left pixel index (int64) and weight of the right pixel (float32) of t for voxels (z, x) at angles theta."""
    cz, cx, ct = (shape[0] - 1) / 2, (shape[2] - 1) / 2, (width - 1) / 2
    t = (x - cx) * np.cos(theta) + (z - cz) * np.sin(theta) + ct
    left = np.clip(np.floor(t), 0, width - 2)
    return left.astype(np.int64), (t - left).astype(np.float32)


def project(volume_zxy: np.ndarray, angles: np.ndarray, width: int, threads: int,
            description: str = "projecting") -> np.ndarray:
    """Line integrals of a volume along the beam at each tilt.

    Args:
        volume_zxy: (Z, X, Y) float32, C-contiguous: the volume (z, y, x) with y last.
        angles: (n,) tilt angles in degrees (rotation about y).
        width: detector pixels along t (see `detector_width`).
        threads: worker threads over angles.

    Returns:
        (n, Y, width) float32 projection images (y, t), in voxel units of length.
    """
    nz, nx, ny = volume_zxy.shape
    shape = (nz, ny, nx)
    flat = volume_zxy.reshape(nz * nx, ny)
    z, x = np.divmod(np.arange(nz * nx), nx)
    columns = np.concatenate([np.arange(nz * nx)] * 2)
    out = np.empty((len(angles), ny, width), dtype=np.float32)

    def run(k: int) -> int:
        left, w = _detector_coords(z, x, np.deg2rad(angles[k]), shape, width)
        rows = np.concatenate([left, left + 1])
        data = np.concatenate([1.0 - w, w])
        matrix = sp.csr_matrix((data, (rows, columns)), shape=(width, nz * nx))
        out[k] = (matrix @ flat).T
        return k

    for _ in track(ordered_map(run, range(len(angles)), threads), description, total=len(angles)):
        pass
    return out


def back_project(images: np.ndarray, angles: np.ndarray, shape: tuple[int, int, int], weights: np.ndarray,
                 threads: int, description: str = "back-projecting", slab: int = 8) -> np.ndarray:
    """Weighted sum over tilts of each image read at every voxel's detector position (adjoint of `project`).

    Args:
        images: (n, Y, width) images (y, t), e.g. ramp-filtered projections.
        angles: (n,) tilt angles in degrees.
        shape: (Z, Y, X) of the volume to fill.
        weights: (n,) weight of each tilt (the angular step in radians for a reconstruction).
        threads: worker threads over slabs of z.
        slab: z planes per work item.

    Returns:
        (Z, X, Y) float32 volume (transpose axes 1 and 2 for z, y, x).
    """
    nz, ny, nx = shape
    n, _, width = images.shape
    stacked = np.ascontiguousarray(images.transpose(0, 2, 1)).reshape(n * width, ny)  # rows (angle, t)
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))[None, :]
    offsets = (np.arange(n) * width)[None, :]
    weights = np.asarray(weights, dtype=np.float32)[None, :]
    out = np.empty((nz * nx, ny), dtype=np.float32)

    def run(z0: int) -> int:
        rows = np.arange(z0 * nx, min(z0 + slab, nz) * nx)
        z, x = np.divmod(rows, nx)
        left, w = _detector_coords(z[:, None], x[:, None], theta, shape, width)
        # per voxel: (angle 0 left, angle 0 right, angle 1 left, ...): column indices ascend within a row
        indices = np.stack([offsets + left, offsets + left + 1], axis=2).reshape(len(rows), -1)
        data = np.stack([weights * (1.0 - w), weights * w], axis=2).reshape(len(rows), -1)
        indptr = np.arange(0, indices.size + 1, 2 * n)
        matrix = sp.csr_matrix((data.ravel(), indices.ravel(), indptr), shape=(len(rows), n * width))
        out[rows[0]:rows[-1] + 1] = matrix @ stacked
        return z0

    starts = range(0, nz, slab)
    for _ in track(ordered_map(run, starts, threads), description, total=len(starts)):
        pass
    return out.reshape(nz, nx, ny)


def angular_weights(angles: np.ndarray) -> np.ndarray:
    """(n,) radians each tilt stands for: half the gap to each neighbour, the full gap at the two ends."""
    theta = np.deg2rad(np.asarray(angles, dtype=np.float64))
    if len(theta) == 1:
        return np.array([np.pi])
    gaps = np.diff(theta)
    weights = np.empty_like(theta)
    weights[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    weights[0], weights[-1] = gaps[0], gaps[-1]
    return weights
