"""The z, y and x views of a volume: which 2D slices they consist of, and how to cut them out.

View "z" slice i is volume[i] (Y, X); view "y" slice i is volume[:, i] (Z, X); view "x" slice i is
volume[:, :, i] (Z, Y). Slice pixels are therefore (row, col) = (y, x), (z, x) and (z, y).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import InputError
from ..io.volume import Volume

VIEWS: tuple[str, ...] = ("z", "y", "x")
_AXIS = {"z": 0, "y": 1, "x": 2}


def as_volume_array(volume: np.ndarray | Volume) -> np.ndarray:
    """The (Z, Y, X) array of `volume` (a `Volume` or an array), checked to be 3D, real and non-empty."""
    arr = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(f"expected a 3D volume (z, y, x), got an array of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(f"expected a real-valued volume, got dtype {arr.dtype}")
    return arr


def check_views(views: Iterable[str]) -> tuple[str, ...]:
    """Validate view names ("z", "y", "x"; distinct, at least one) and return them as a tuple."""
    out = tuple(views) if not isinstance(views, str) else (views,)
    bad = [v for v in out if v not in VIEWS]
    if bad or not out or len(set(out)) != len(out):
        raise InputError(f"views must be distinct names among 'z', 'y', 'x'; got {out}")
    return out


def view_length(shape: Sequence[int], view: str) -> int:
    """Number of slices of `view` in a volume of `shape` (Z, Y, X)."""
    return int(shape[_AXIS[check_views(view)[0]]])


def view_image_shape(shape: Sequence[int], view: str) -> tuple[int, int]:
    """(H, W) of one slice of `view` in a volume of `shape` (Z, Y, X)."""
    axis = _AXIS[check_views(view)[0]]
    rest = [int(s) for a, s in enumerate(shape) if a != axis]
    return rest[0], rest[1]


def view_slice(volume: np.ndarray, view: str, index: int) -> np.ndarray:
    """Slice `index` of `view` of a (Z, Y, X) array, as an (H, W) array (a view where possible)."""
    n = view_length(volume.shape, view)
    if not 0 <= int(index) < n:
        raise InputError(f"slice {index} is outside view {view!r}, which has slices 0..{n - 1}")
    return volume[(slice(None),) * _AXIS[view] + (int(index),)]


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
