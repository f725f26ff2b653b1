"""From accepted 2D plane masks to one clean 3D instance mask: union, hole filling, the prompt's component.

Everything works on the instance's bounding box (a crop), so memory grows with the instance, not the tomogram.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..geometry import AXIS, in_plane_axes, paste_index
from .config import SelfPromptConfig
from .propagate import PlaneMask


def union_of_planes(planes: list[PlaneMask], shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paint 2D plane masks into their common 3D bounding box.

    Returns:
        offset: (3,) int, z, y, x of the crop's first voxel in the volume.
        crop: (dz, dy, dx) bool, the union of the planes.
    """
    lo = np.array(shape, dtype=int)
    hi = np.zeros(3, dtype=int)
    for p in planes:
        start, stop = _plane_extent(p)
        lo, hi = np.minimum(lo, start), np.maximum(hi, stop)
    crop = np.zeros(tuple(hi - lo), dtype=bool)
    for p in planes:
        start, _ = _plane_extent(p)
        rel = start - lo
        h, w = p.mask.shape
        axis = AXIS[p.view]
        rows, cols = in_plane_axes(p.view)
        idx = paste_index(p.view, int(rel[axis]), int(rel[rows]), int(rel[rows]) + h, int(rel[cols]),
                          int(rel[cols]) + w)
        crop[idx] |= p.mask
    return lo, crop


def _plane_extent(p: PlaneMask) -> tuple[np.ndarray, np.ndarray]:
    axis = AXIS[p.view]
    rows, cols = in_plane_axes(p.view)
    start = np.zeros(3, dtype=int)
    stop = np.zeros(3, dtype=int)
    start[axis], stop[axis] = p.index, p.index + 1
    start[rows], stop[rows] = p.r0, p.r0 + p.mask.shape[0]
    start[cols], stop[cols] = p.c0, p.c0 + p.mask.shape[1]
    return start, stop


def fill_small_holes(mask: np.ndarray, max_fraction: float) -> np.ndarray:
    """Fill enclosed background pockets of a 3D (Z, Y, X) bool mask smaller than `max_fraction` of its volume."""
    padded = np.pad(mask, 1)  # the outside of the crop is outside the object
    background, n = ndimage.label(~padded)
    if n <= 1:
        return mask
    sizes = np.bincount(background.ravel())
    outside = background[0, 0, 0]
    limit = max_fraction * np.count_nonzero(mask)
    fill = (sizes <= limit)
    fill[0] = False
    fill[outside] = False
    return (padded | fill[background])[1:-1, 1:-1, 1:-1]


def component_at(mask: np.ndarray, point: np.ndarray, connectivity: int) -> np.ndarray:
    """The connected component of a (Z, Y, X) bool mask holding `point` (z, y, x ints), else the nearest one."""
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels, n = ndimage.label(mask, structure=structure)
    if n == 0:
        return mask
    point = np.asarray(point)
    inside = bool(np.all(point >= 0) and np.all(point < mask.shape))
    label = labels[tuple(point)] if inside else 0
    if label == 0:
        voxels = np.argwhere(labels)
        nearest = voxels[np.argmin(((voxels - point) ** 2).sum(axis=1))]
        label = labels[tuple(nearest)]
    return labels == label


def split_off_negatives(mask: np.ndarray, point: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Cut a (Z, Y, X) bool mask between the prompt and negative points that ended up inside it.

    A watershed on the distance transform, seeded at the prompt and at the negatives, gives each seed
    its own lobe; the prompt's lobe is kept. `point` (3,) and `negatives` (M, 3) are int z, y, x in the crop.
    """
    inside = [n for n in negatives if np.all(n >= 0) and np.all(n < mask.shape) and mask[tuple(n)]]
    if not inside:
        return mask
    from skimage.segmentation import watershed

    markers = np.zeros(mask.shape, dtype=np.int32)
    for n in inside:
        markers[tuple(n)] = 2
    markers[tuple(point)] = 1
    depth = ndimage.distance_transform_edt(mask)
    return watershed(-depth, markers, mask=mask) == 1


def clean_instance(crop: np.ndarray, point: np.ndarray, negatives: np.ndarray, config: SelfPromptConfig) -> np.ndarray:
    """Fill holes, cut off negatives, keep the prompt's component. Arrays and points are in crop coordinates."""
    if config.fill_holes:
        crop = fill_small_holes(crop, config.max_hole_fraction)
    crop = component_at(crop, point, config.connectivity)
    held = bool(np.all(point >= 0) and np.all(point < crop.shape)) and crop[tuple(point)]
    if len(negatives) and held:
        crop = component_at(split_off_negatives(crop, point, negatives), point, config.connectivity)
    return crop
