"""Checking prompt points against the volume they are meant for."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import outside_volume, to_voxel
from ..io.particles import Particles
from ..io.volume import Volume

logger = logging.getLogger(__name__)


def as_points(points: Any, shape: tuple[int, int, int], what: str = "prompt") -> np.ndarray:
    """Validate prompt points and return them as (N, 3) float64 z, y, x voxels.

    Args:
        points: (N, 3) or (3,) array-like in z, y, x voxels, or `Particles`; None gives (0, 3).
        shape: (Z, Y, X) of the volume the points belong to.
        what: how to call the points in error messages ("prompt", "negative point").

    Raises:
        InputError: wrong shape, NaN/Inf, or a point outside the volume.
    """
    if points is None:
        return np.zeros((0, 3))
    if isinstance(points, Particles):
        points = points.coords
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}s must be numbers z, y, x in voxels: {exc}") from None
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None]
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(f"{what}s must have shape (N, 3) in z, y, x voxels; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what}s contain NaN or Inf")
    outside = outside_volume(arr, shape)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        z, y, x = arr[i]
        raise InputError(f"{what} {i + 1} at (z, y, x) = ({z:g}, {y:g}, {x:g}) voxels lies outside the volume of "
                         f"shape {tuple(shape)} (z, y, x)")
    return arr


def reconcile_prompts(prompts: np.ndarray, negatives: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Drop prompts that repeat an earlier one's voxel (one warning with the count), and refuse a negative point on
    the voxel of a prompt, which would ask for a voxel to be both inside and outside an instance.

    Args:
        prompts: (N, 3) z, y, x voxels.
        negatives: (M, 3) z, y, x voxels.
        shape: (Z, Y, X) of the volume they are in.

    Returns:
        (K, 3) the prompts in their order, each voxel once.
    """
    voxels = to_voxel(prompts, shape)
    if len(negatives):
        clash = (voxels[:, None, :] == to_voxel(negatives, shape)[None]).all(axis=2)
        if clash.any():
            i, j = (int(k) for k in np.argwhere(clash)[0])
            z, y, x = prompts[i]
            raise InputError(f"negative point {j + 1} is on the voxel of prompt {i + 1} at (z, y, x) = "
                             f"({z:g}, {y:g}, {x:g}); a voxel cannot be both inside and outside an instance")
    _, first = np.unique(voxels, axis=0, return_index=True)
    keep = np.sort(first)
    if len(keep) < len(prompts):
        logger.warning("%d of %d prompts repeat the voxel of an earlier prompt; each voxel is used once",
                       len(prompts) - len(keep), len(prompts))
    return prompts[keep]


def load_prompts(source: Any, volume: Volume, what: str = "prompt") -> np.ndarray:
    """Prompt points for `volume` from an array, `Particles` or a coordinate file, checked against it.

    Args:
        source: (N, 3) z, y, x voxels, `Particles`, or a path to a coordinate file (STAR, CSV, copick JSON,
            NDJSON; converted to voxels of `volume` with its voxel size and shape). None gives (0, 3).
        volume: the tomogram the points are for.
        what: how to call the points in error messages.

    Returns:
        (N, 3) float64 z, y, x voxels.

    Raises:
        InputError: unreadable file, a copick file picked at another voxel spacing, points outside the volume.
    """
    if isinstance(source, (str, Path)):
        from ..io.coords import read_particles_for

        path = Path(source)
        source = read_particles_for(path, volume)  # refuses picks made at another voxel spacing
        if not len(source):
            raise InputError(f"{path}: holds no {what}s")
    return as_points(source, volume.shape, what)
