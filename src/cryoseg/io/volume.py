"""The `Volume` dataclass: a 3D array in z, y, x with its voxel size in Å."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError


@dataclass
class Volume:
    """A tomogram, label map or image stack.

    Attributes:
        data: array of shape (Z, Y, X). May be a read-only memory map for large files.
        voxel_size: Å per voxel along (z, y, x).
        origin: position of voxel (0, 0, 0) in Å along (z, y, x).
        source: the file it was read from, if any (used to refuse overwriting inputs).
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            where = f" in {self.source}" if self.source else ""
            raise InputError(f"expected a 3D volume (z, y, x){where}, got an array of shape {self.data.shape}")
        self.voxel_size = tuple(float(v) for v in np.broadcast_to(np.asarray(self.voxel_size, float), (3,)))
        self.origin = tuple(float(v) for v in np.broadcast_to(np.asarray(self.origin, float), (3,)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)

    def require_voxel_size(self) -> tuple[float, float, float]:
        """Return the voxel size, or raise if it is zero, negative or not finite (a missing header value)."""
        vs = np.asarray(self.voxel_size)
        if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            where = f"{self.source}: " if self.source else ""
            raise InputError(
                f"{where}voxel size is missing or invalid ({', '.join(f'{v:g}' for v in self.voxel_size)} Å); "
                "pass --voxel-size (voxel_size=) to set it"
            )
        return self.voxel_size


def as_volume_array(volume: np.ndarray | Volume) -> np.ndarray:
    """The (Z, Y, X) array of `volume` (a `Volume` or an array), checked to be 3D, real and non-empty."""
    arr = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(f"expected a 3D volume (z, y, x), got an array of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(f"expected a real-valued volume, got dtype {arr.dtype}")
    return arr
