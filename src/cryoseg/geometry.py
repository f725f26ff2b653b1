"""The one place that says how a (Z, Y, X) volume is cut into views and what lies inside it.

Views: view "z" slice k is `volume[k]`, shape (Y, X), pixel (row, col) = (y, x); view "y" slice k is
`volume[:, k]`, shape (Z, X), pixels (z, x); view "x" slice k is `volume[:, :, k]`, shape (Z, Y), pixels (z, y).
The slice axis is dropped and the other two keep their order, as numpy indexing does.

Inside: voxel i covers the continuous coordinates [i - 0.5, i + 0.5), so a point c (z, y, x, in voxels) lies inside
a volume of shape (Z, Y, X) when -0.5 <= c < n - 0.5 on every axis. Rounding it then gives a voxel of the volume.
The same rule holds for the (y, x) pixels of a slice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError

VIEWS: tuple[str, ...] = ("z", "y", "x")
AXIS: dict[str, int] = {"z": 0, "y": 1, "x": 2}


def check_views(views: Iterable[str] | str) -> tuple[str, ...]:
    """Validate view names ("z", "y", "x"; distinct, at least one) and return them as a tuple."""
    out = (views,) if isinstance(views, str) else tuple(views)
    bad = [v for v in out if v not in VIEWS]
    if bad or not out or len(set(out)) != len(out):
        raise InputError(f"views must be distinct names among 'z', 'y', 'x'; got {out}")
    return out


def in_plane_axes(view: str) -> tuple[int, int]:
    """The volume axes that are the (row, col) axes of a slice of `view`."""
    axis = AXIS[check_views(view)[0]]
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


def view_axes(view: str) -> tuple[int, int, int]:
    """(slice axis, row axis, column axis) of `view` in the volume."""
    return (AXIS[view], *in_plane_axes(view))


def view_length(shape: Sequence[int], view: str) -> int:
    """Number of slices of `view` in a volume of `shape` (Z, Y, X)."""
    return int(shape[AXIS[check_views(view)[0]]])


def view_image_shape(shape: Sequence[int], view: str) -> tuple[int, int]:
    """(H, W) of one slice of `view` in a volume of `shape` (Z, Y, X)."""
    rows, cols = in_plane_axes(view)
    return int(shape[rows]), int(shape[cols])


def view_slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """Slice `index` of `view` of a (Z, Y, X) array, as an (H, W) array (a view where possible)."""
    n = view_length(volume.shape, view)
    if not 0 <= int(index) < n:
        raise InputError(f"slice {index} is outside view {view!r}, which has slices 0..{n - 1}")
    return volume[(slice(None),) * AXIS[view] + (int(index),)]


def resolve_indices(shape: Sequence[int], view: str,
                    slices: Sequence[int] | Mapping[str, Sequence[int]] | None) -> np.ndarray:
    """The sorted, unique slice indices of `view` asked for: all when `slices` is None.

    `slices` is either one list of indices used for every view, or a mapping view -> indices (a view
    missing from the mapping gets all its slices).
    """
    n = view_length(shape, view)
    chosen = slices.get(view) if isinstance(slices, Mapping) else slices
    if chosen is None:
        return np.arange(n)
    idx = np.asarray(list(chosen))
    if idx.size == 0:
        return np.zeros(0, np.int64)
    if not np.issubdtype(idx.dtype, np.integer):
        raise InputError(f"slice indices must be integers, got {idx.dtype} for view {view!r}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise InputError(f"slice {int(bad[0])} is outside view {view!r}, which has slices 0..{n - 1}")
    return np.unique(idx.astype(np.int64))


def to_slice(points: np.ndarray, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Split (N, 3) z, y, x points into slice coordinates (N,) along the view axis and (N, 2) in-plane (row, col)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    axis, rows, cols = view_axes(view)
    return points[:, axis], points[:, [rows, cols]]


def paste_index(view: str, index: int, r0: int, r1: int, c0: int, c1: int) -> tuple[slice | int, ...]:
    """Index into a (Z, Y, X) array for rows r0:r1 and columns c0:c1 of slice `index` of `view`."""
    out: list[slice | int] = [slice(None)] * 3
    axis, rows, cols = view_axes(view)
    out[axis] = index
    out[rows] = slice(r0, r1)
    out[cols] = slice(c0, c1)
    return tuple(out)


def outside_volume(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(N,) bool: which of the (N, D) points lie outside an array of `shape` (D axes, e.g. z, y, x voxels of a
    volume or y, x pixels of a slice), by the module's rule: -0.5 <= c < n - 0.5 on every axis."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, len(shape))
    upper = np.asarray(shape, dtype=np.float64) - 0.5
    return np.any((pts < -0.5) | (pts >= upper), axis=1)


def to_voxel(points: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The voxel holding each of the (N, 3) z, y, x points (module rule: c in [i - 0.5, i + 0.5) is voxel i),
    as (N, 3) int64 clipped into `shape`."""
    voxels = np.floor(np.asarray(points, dtype=np.float64) + 0.5).astype(np.int64)
    return np.clip(voxels, 0, np.asarray(shape) - 1)


def equivalent_radius(voxels: float) -> float:
    """Radius (voxels) of the ball of `voxels` voxels (a particle's equivalent-sphere radius)."""
    return float((3.0 * voxels / (4.0 * np.pi)) ** (1.0 / 3.0))
