"""The record of one prompt and the 3D instance grown from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Why an instance has no voxels in the label volume (status "ok" means it has).
STATUSES = ("ok", "empty", "duplicate", "rejected_size", "skipped")


@dataclass
class InstanceInfo:
    """One prompt and the instance grown from it.

    Attributes:
        label: its id in the label volume (0 when status is not "ok").
        prompt: (3,) z, y, x voxels of the prompt point.
        status: "ok"; "empty" (no mask in any plane); "duplicate" (the prompt lies in an earlier instance,
            whose label is `duplicate_of`); "rejected_size" (removed by a pipeline's size filter);
            "skipped" (a pipeline proposal inside an instance already found; not segmented).
        voxels: number of voxels.
        centroid: (3,) z, y, x voxels (NaN when empty).
        bbox: (z0, y0, x0, z1, y1, x1), end exclusive, or None when empty.
        iou_score: mean predicted IoU of the 2D masks it was built from (NaN when there were none).
        n_planes: number of 2D masks in its union.
        slices: slices accepted per propagation direction, keys "+z", "-z", "+y", "-y", "+x", "-x".
        duplicate_of: label of the instance holding the prompt, for status "duplicate".
    """

    label: int
    prompt: np.ndarray
    status: str
    voxels: int = 0
    centroid: np.ndarray = field(default_factory=lambda: np.full(3, np.nan))
    bbox: tuple[int, int, int, int, int, int] | None = None
    iou_score: float = float("nan")
    n_planes: int = 0
    slices: dict[str, int] = field(default_factory=dict)
    duplicate_of: int = 0

    def fit_to(self, voxels: np.ndarray, offset: np.ndarray | tuple[int, int, int]) -> None:
        """Set `voxels`, `centroid` and `bbox` from the instance's (K, 3) voxel indices within a window at
        `offset` (z, y, x) of the volume (K >= 1)."""
        offset = np.asarray(offset)
        lo, hi = voxels.min(axis=0) + offset, voxels.max(axis=0) + offset + 1
        self.voxels = len(voxels)
        self.centroid = voxels.mean(axis=0) + offset
        self.bbox = tuple(int(v) for v in (*lo, *hi))

    def as_row(self) -> dict[str, Any]:
        """A flat dict (for CSV tables and JSON reports)."""
        row: dict[str, Any] = {"label": self.label, "status": self.status,
                               "prompt_z": self.prompt[0], "prompt_y": self.prompt[1], "prompt_x": self.prompt[2],
                               "voxels": self.voxels, "centroid_z": self.centroid[0],
                               "centroid_y": self.centroid[1], "centroid_x": self.centroid[2],
                               "iou_score": self.iou_score, "n_planes": self.n_planes}
        for key in ("+z", "-z", "+y", "-y", "+x", "-x"):
            row[f"slices{key}"] = self.slices.get(key, 0)
        return row
