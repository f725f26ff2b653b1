"""Geometry of the three orthogonal views of a (Z, Y, X) volume.

View "z" holds slices `volume[k]` of shape (Y, X) with pixel (row, col) = (y, x); view "y" holds
`volume[:, k, :]`, shape (Z, X), pixels (z, x); view "x" holds `volume[:, :, k]`, shape (Z, Y), pixels (z, y).
The slice axis is dropped and the other two keep their order, as numpy indexing does.
"""

from __future__ import annotations

import numpy as np

AXIS = {"z": 0, "y": 1, "x": 2}


def in_plane_axes(view: str) -> tuple[int, int]:
    """The volume axes that are the (row, col) axes of a slice of `view`."""
    axis = AXIS[view]
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


def to_slice(points: np.ndarray, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Split (N, 3) z, y, x points into slice indices (N,) along the view axis and (N, 2) in-plane (row, col)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    rows, cols = in_plane_axes(view)
    return points[:, AXIS[view]], points[:, [rows, cols]]


def paste_index(view: str, index: int, r0: int, r1: int, c0: int, c1: int) -> tuple[slice | int, ...]:
    """Index into a (Z, Y, X) array for rows r0:r1 and columns c0:c1 of slice `index` of `view`."""
    out: list[slice | int] = [slice(None)] * 3
    rows, cols = in_plane_axes(view)
    out[AXIS[view]] = index
    out[rows] = slice(r0, r1)
    out[cols] = slice(c0, c1)
    return tuple(out)
