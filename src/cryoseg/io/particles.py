"""The `Particles` table: coordinates in voxels (z, y, x) with optional per-particle attributes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..geometry import outside_volume


@dataclass
class Particles:
    """A particle pick.

    Attributes:
        coords: (N, 3) float64, z, y, x in voxels of the tomogram they belong to.
        classes: (N,) int class ids, or None.
        scores: (N,) float scores (higher is more confident), or None.
        instance_ids: (N,) int instance label ids, or None.
        orientations: (N, 3) float RELION Euler angles (rot, tilt, psi) in degrees, ZYZ convention, or None.
        class_names: optional map from class id to a name (for copick object names).
    """

    coords: np.ndarray
    classes: np.ndarray | None = None
    scores: np.ndarray | None = None
    instance_ids: np.ndarray | None = None
    orientations: np.ndarray | None = None
    class_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        coords = np.asarray(self.coords, dtype=np.float64)
        if coords.size == 0:
            coords = coords.reshape(0, 3)
        if coords.ndim != 2 or coords.shape[1] != 3:
            raise InputError(f"particle coordinates must have shape (N, 3) in z, y, x; got {coords.shape}")
        if not np.all(np.isfinite(coords)):
            raise InputError("particle coordinates contain NaN or Inf")
        self.coords = coords
        n = len(coords)
        for name, dtype, width in (("classes", np.int64, None), ("scores", np.float64, None),
                                   ("instance_ids", np.int64, None), ("orientations", np.float64, 3)):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=dtype)
            expected = (n,) if width is None else (n, width)
            if arr.shape != expected:
                raise InputError(f"particle {name} must have shape {expected}, got {arr.shape}")
            setattr(self, name, arr)

    def __len__(self) -> int:
        return len(self.coords)

    def subset(self, keep: np.ndarray) -> Particles:
        """Return the particles selected by a boolean mask or index array."""
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return Particles(self.coords[keep], pick(self.classes), pick(self.scores), pick(self.instance_ids),
                         pick(self.orientations), dict(self.class_names))

    def select_class(self, wanted: int | str) -> Particles:
        """The particles of one class, as `subset` gives them (classes and names kept).

        Args:
            wanted: a class id, or a class name from `class_names`; a string of digits that is no name
                is read as an id (command-line values arrive as text).

        Returns:
            the selected particles, (K, 3) z, y, x coordinates with their attributes.

        Raises:
            InputError: the particles have no classes, or none of the wanted class (the message lists the
                classes present).
        """
        if self.classes is None:
            raise InputError(f"the particles have no classes, so class {wanted} cannot be selected")
        by_name = {name: cid for cid, name in self.class_names.items()}
        if isinstance(wanted, str):
            cid = by_name.get(wanted, int(wanted) if wanted.lstrip("-").isdigit() else None)
        else:
            cid = int(wanted)
        keep = self.classes == cid if cid is not None else np.zeros(len(self), bool)
        if not keep.any():
            present = ", ".join(f"{c} ({self.class_names[c]})" if c in self.class_names else str(c)
                                for c in np.unique(self.classes).tolist())
            raise InputError(f"no particles of class {wanted}; classes present: {present or 'none'}")
        return self.subset(keep)

    def outside(self, shape: tuple[int, int, int]) -> np.ndarray:
        """Boolean (N,) mask of particles whose centre lies outside a volume of `shape` (z, y, x), by the one
        inside rule of `cryoseg.geometry` (-0.5 <= c < n - 0.5 on every axis)."""
        return outside_volume(self.coords, shape)
