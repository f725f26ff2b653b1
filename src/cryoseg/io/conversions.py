"""Checks and conversions that every coordinate format module (`star`, `csvfile`, `copick`, `ndjson`) shares.

They live below `coords` (the entry point that dispatches to the format modules), so the format modules import
them from here and nothing in io/ imports in a circle.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .particles import Particles

VoxelSize = float | Sequence[float]


def normalize_voxel_size(voxel_size: VoxelSize | None) -> np.ndarray | None:
    """Voxel size as a (3,) float array in Å along (z, y, x), from a float or a (z, y, x) sequence; None stays None."""
    if voxel_size is None:
        return None
    try:
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
    except (TypeError, ValueError) as exc:
        raise InputError(f"voxel size must be one number or three (z, y, x) in Å, got {voxel_size!r}") from exc
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(f"voxel size must be positive and finite (Å), got {tuple(vs.tolist())}")
    return vs


def normalize_shape(shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    """Volume shape as three positive ints (z, y, x); None stays None."""
    if shape is None:
        return None
    try:
        values = [float(s) for s in shape]
    except (TypeError, ValueError) as exc:
        raise InputError(f"volume shape must be three integers (z, y, x), got {shape!r}") from exc
    if len(values) != 3 or any(v != int(v) or v < 1 for v in values):
        raise InputError(f"volume shape must be three positive integers (z, y, x), got {tuple(shape)}")
    return tuple(int(v) for v in values)


def require_voxel_size(voxel_size: np.ndarray | None, path: Path, what: str) -> np.ndarray:
    """Raise a clear error when a format in Å is converted without a voxel size."""
    if voxel_size is None:
        raise InputError(f"{path}: {what} needs the voxel size in Å; pass voxel_size (CLI: --voxel-size or --tomogram)")
    return voxel_size


def require_shape(shape: tuple[int, int, int] | None, path: Path, what: str) -> tuple[int, int, int]:
    """Raise a clear error when a centred format is converted without the volume shape."""
    if shape is None:
        raise InputError(f"{path}: {what} needs the tomogram shape (z, y, x); pass shape (CLI: --shape or --tomogram)")
    return shape


def relion_angles_to_matrices(angles: np.ndarray) -> np.ndarray:
    """Object-to-tomogram rotations from RELION Euler angles.

    Args:
        angles: (N, 3) rot, tilt, psi in degrees (ZYZ, RELION convention).

    Returns:
        (N, 3, 3) matrices acting on (x, y, z) column vectors; the inverse (transpose) of RELION's Euler matrix.
    """
    from scipy.spatial.transform import Rotation

    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def matrices_to_relion_angles(matrices: np.ndarray, path: Path | str = "") -> np.ndarray:
    """RELION Euler angles from object-to-tomogram rotations; the inverse of `relion_angles_to_matrices`.

    Args:
        matrices: (N, 3, 3) rotations acting on (x, y, z) column vectors.
        path: file the matrices came from, for the error message.

    Returns:
        (N, 3) rot, tilt, psi in degrees; tilt in [0, 180], rot and psi in (-180, 180].
    """
    from scipy.spatial.transform import Rotation

    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    if len(matrices) == 0:
        return np.zeros((0, 3))
    if not np.all(np.isfinite(matrices)):
        raise InputError(f"{path}: rotation matrices contain NaN or Inf")
    # from_matrix would silently orthogonalise a scaled or sheared matrix; refuse those instead.
    gram = np.einsum("nij,nkj->nik", matrices, matrices)
    bad = np.flatnonzero(~np.all(np.isclose(gram, np.eye(3), atol=1e-4), axis=(1, 2)) | (np.linalg.det(matrices) < 0))
    if bad.size:
        raise InputError(f"{path}: {bad.size} orientation matrices are not rotations (first at point {bad[0]})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gimbal lock at tilt 0 or 180: scipy sets psi to 0, which is still exact
        angles = Rotation.from_matrix(matrices).inv().as_euler("ZYZ", degrees=True)
    angles[:, [0, 2]] = -((180.0 - angles[:, [0, 2]]) % 360.0 - 180.0)  # rot, psi into (-180, 180]
    return angles


def make_particles(path: Path, coords: np.ndarray, **fields: object) -> Particles:
    """Build `Particles`, naming the file and the rows when coordinates are missing or not finite.

    Args:
        path: the file the values came from.
        coords: (N, 3) z, y, x in voxels.
        fields: the other `Particles` fields.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    bad = np.flatnonzero(~np.all(np.isfinite(coords), axis=1))
    if bad.size:
        rows = ", ".join(str(i + 1) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise InputError(f"{path}: {bad.size} particle(s) have missing, NaN or Inf coordinates (entries {rows})")
    for name in ("scores", "orientations"):
        value = fields.get(name)
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise InputError(f"{path}: particle {name} contain missing, NaN or Inf values")
    try:
        return Particles(coords, **fields)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc
