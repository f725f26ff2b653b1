"""Uniform random rotations, RELION Euler angles, and rotating a template into place.

Convention: an orientation is the rotation R (acting on x, y, z column vectors) that turns the template
into the particle: particle(p) = template(R^T p) for offsets p from the centre. RELION's Euler angles
(rot, tilt, psi, ZYZ) describe the same particle with R = Rotation.from_euler("ZYZ", angles).inv(), as
in `cryoseg.io.conversions.relion_angles_to_matrices`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

# Reverses (x, y, z) <-> (z, y, x); its own inverse.
_REVERSE = np.eye(3)[::-1]


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations (x, y, z) drawn uniformly from SO(3): normalised 4D Gaussians are uniform quaternions."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    if n == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_quat(q).as_matrix().reshape(n, 3, 3)


def matrices_to_euler(matrices: np.ndarray) -> np.ndarray:
    """RELION (rot, tilt, psi) in degrees, shape (N, 3), for template-to-particle rotations (N, 3, 3) in x, y, z."""
    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    if len(matrices) == 0:
        return np.zeros((0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gimbal lock (tilt 0 or 180) is still represented exactly
        return Rotation.from_matrix(matrices).inv().as_euler("ZYZ", degrees=True)


def euler_to_matrices(angles: np.ndarray) -> np.ndarray:
    """Template-to-particle rotations (N, 3, 3) in x, y, z from RELION (rot, tilt, psi) degrees, shape (N, 3)."""
    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def zyx_matrix(rotation_xyz: np.ndarray) -> np.ndarray:
    """The same rotation (3, 3) acting on (z, y, x) index vectors."""
    return _REVERSE @ np.asarray(rotation_xyz, dtype=np.float64) @ _REVERSE


def box_size(radius: float) -> int:
    """Odd cube edge (voxels) holding a sphere of `radius` voxels around its central voxel, plus interpolation room."""
    return 2 * int(np.ceil(radius)) + 3


def rotate_into_box(arrays: tuple[np.ndarray, ...], center: np.ndarray, rotation_xyz: np.ndarray,
                    frac: np.ndarray, size: int) -> list[np.ndarray]:
    """Resample template arrays rotated by `rotation_xyz` into a cube centred on a sub-voxel position.

    Args:
        arrays: template arrays, each (z, y, x), sharing one grid (e.g. density and label mask).
        center: (3,) z, y, x of the template's centre in its own index grid.
        rotation_xyz: (3, 3) template-to-particle rotation on x, y, z vectors.
        frac: (3,) z, y, x sub-voxel offset of the particle centre from the box's central voxel, in [-0.5, 0.5].
        size: edge of the output cube (odd); the particle centre is at index size // 2 + frac.

    Returns:
        one float32 (size, size, size) array per input, linear interpolation (a 0/1 mask is then thresholded at
        0.5, which keeps thin parts connected where nearest-neighbour sampling would break them), zero outside.
    """
    # output index o holds template(center + R^T (o - half - frac)); affine_transform maps o -> input index.
    inverse = zyx_matrix(rotation_xyz).T
    half = np.full(3, size // 2, dtype=np.float64)
    offset = np.asarray(center, dtype=np.float64) - inverse @ (half + np.asarray(frac, dtype=np.float64))
    return [ndimage.affine_transform(a, inverse, offset=offset, output_shape=(size, size, size), order=1,
                                     mode="constant", cval=0.0, output=np.float32, prefilter=False)
            for a in arrays]
