"""A prompted instance that leaked into a neighbour: detected by where its mask lies around the click, and cut
back to the part around the click.

When the mask of a prompt runs into a neighbouring structure, the query and the exemplar describe the wrong
thing and every proposal falls inside the leaked region. Users click particles near their middle, so a mask
that holds the particle alone is centred close to the click (within a third of its radius on simulated
tomograms); one that also holds a neighbour is centred towards the neighbour (two equal touching balls: 0.8
of the merged mask's equivalent radius from either centre). The repair splits the mask at its necks (a
watershed of its distance transform) and keeps the lobe holding the click. A mask with no neck is left as it
is when the click lies within its equivalent radius of its centroid (one body clicked off its centre:
DeepFinder's particle centres often lie on a mask's rim), and cut to a ball around the click when farther (it
ran along something thin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..geometry import equivalent_radius
from ..segment3d.cleanup import component_at
from ..segment3d.records import InstanceInfo

OFFSET_FACTOR = 0.5  # leaked when the centroid lies farther than this times the equivalent radius from the click


@dataclass(frozen=True)
class Leak:
    """A prompted instance whose mask leaked: its size and centroid offset before and after the repair."""

    prompt: int
    voxels: int
    offset: float
    kept_voxels: int

    def describe(self) -> str:
        return (f"prompt {self.prompt}'s mask ran into a neighbour ({self.voxels} voxels, centred {self.offset:.1f} "
                f"voxels from the click); it was cut back to the {self.kept_voxels} voxels around the click")


def is_leaked(info: InstanceInfo) -> bool:
    """Whether a prompted instance's centroid lies too far from its click for a mask of its size."""
    offset = float(np.linalg.norm(info.centroid - info.prompt))
    return offset > max(2.0, OFFSET_FACTOR * equivalent_radius(info.voxels))


def lobe_at(mask: np.ndarray, point: np.ndarray, far: bool, depth: float = 1.0) -> np.ndarray | None:
    """The lobe of a (Z, Y, X) bool mask holding `point` (z, y, x ints): a watershed of the distance transform
    from its maxima deeper than `depth` voxels over their surroundings, so necks between blobs split it.

    When no neck separates the click's lobe from the rest (it would hold 90 % of the mask or more): with `far`
    (the mask's centroid lies beyond its equivalent radius from the click: the mask ran along something thin),
    the ball around the click as deep as the mask there, plus one voxel; otherwise None: one compact body
    clicked off its centre, not a leak.
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    depth_map = ndimage.distance_transform_edt(mask)
    markers, _ = ndimage.label(h_maxima(depth_map, depth) & mask)
    basins = watershed(-depth_map, markers, mask=mask)
    point = np.clip(point, 0, np.array(mask.shape) - 1)
    lobe = component_at(basins == basins[tuple(point)], point, 1) if mask[tuple(point)] else component_at(mask, point, 1)
    if lobe.sum() < 0.9 * mask.sum():
        return lobe
    if not far:
        return None
    grid = np.ogrid[tuple(slice(0, s) for s in mask.shape)]
    radius = float(depth_map[tuple(point)]) + 1.0
    return mask & (sum((g - p) ** 2 for g, p in zip(grid, point)) <= radius**2)


def repair_leak(labels: np.ndarray, info: InstanceInfo, number: int) -> Leak | None:
    """Cut a leaked prompted instance back to its lobe around the click, in place; None when it has not leaked
    (centred near its click, or with no neck to cut at).

    Args:
        labels: (Z, Y, X) instance labels holding `info.label`.
        info: the prompted instance (status "ok"); its voxels, centroid and bbox are updated.
        number: the prompt's number (1-based), for messages.
    """
    if not is_leaked(info):
        return None
    z0, y0, x0, z1, y1, x1 = info.bbox
    window = (slice(z0, z1), slice(y0, y1), slice(x0, x1))
    mine = labels[window] == info.label
    offset = float(np.linalg.norm(info.centroid - info.prompt))
    far = offset > equivalent_radius(info.voxels)
    kept = lobe_at(mine, np.round(info.prompt).astype(np.int64) - (z0, y0, x0), far)
    voxels = np.argwhere(kept) if kept is not None else np.zeros((0, 3))
    if not len(voxels):
        return None
    leak = Leak(number, info.voxels, offset, len(voxels))
    labels[window][mine & ~kept] = 0
    info.fit_to(voxels, (z0, y0, x0))
    return leak
