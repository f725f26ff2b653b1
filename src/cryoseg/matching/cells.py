"""The cell grids of the matching pyramid: a level of `d` voxels per cell cuts a (Z, Y, X) volume into cells of
d x d x d voxels (the last along each axis may be shorter). Cell i along an axis spans voxels [i * d, (i + 1) * d).
"""

from __future__ import annotations

import numpy as np


def grid_shape(shape: tuple[int, int, int], level: int) -> tuple[int, int, int]:
    """(nz, ny, nx) cells of `level` voxels covering a volume of `shape` (Z, Y, X); the last cell may be partial."""
    return tuple(-(-s // level) for s in shape)


def cell_centers(index: np.ndarray, level: int, length: int) -> np.ndarray:
    """Voxel coordinate of the centre of cells `index` of `level` voxels along an axis of `length` voxels.

    Args:
        index: (N,) int cell indices along the axis.

    Returns:
        (N,) float: (first + last voxel of the cell) / 2, so a partial last cell is centred on what it covers.
    """
    start = index * level
    end = np.minimum(start + level, length)
    return (start + end - 1) / 2.0


def children(keep: np.ndarray, ratio: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The cells of the next level (`ratio` times finer, grid `shape`) lying inside kept cells.

    Args:
        keep: (nz, ny, nx) bool, the kept cells of the coarser level.
        ratio: how many finer cells span one coarser cell along each axis.
        shape: (nz', ny', nx') grid of the finer level.

    Returns:
        (nz', ny', nx') bool.
    """
    fine = keep
    for axis in range(3):
        fine = np.repeat(fine, ratio, axis=axis)
    return np.ascontiguousarray(fine[: shape[0], : shape[1], : shape[2]])
