"""Operations on the classical segmenter's binary masks: seeded components, holes, cuts, shape quality.

Masks are 2D bool arrays (rows, cols); seeds and points are (k, 2) int (y, x) in that array's pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return yy**2 + xx**2 <= r * r + 0.5


def touches_border(mask: np.ndarray, window: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Whether `mask` (crop coordinates) reaches a crop edge that is not also the slice's edge."""
    y0, x0, y1, x1 = window
    H, W = shape
    return bool((y0 > 0 and mask[0].any()) or (y1 < H and mask[-1].any())
                or (x0 > 0 and mask[:, 0].any()) or (x1 < W and mask[:, -1].any()))


def seed_components(labels: np.ndarray, seeds: np.ndarray, radius: int) -> set[int]:
    """Labels of the components at (or, failing that, nearest within `radius` of) each seed (crop coordinates)."""
    found = set()
    for y, x in seeds:
        if labels[y, x]:
            found.add(int(labels[y, x]))
            continue
        ys, xs = slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1)
        patch = labels[ys, xs]
        if patch.any():
            py, px = np.nonzero(patch)
            d = (py + ys.start - y) ** 2 + (px + xs.start - x) ** 2
            k = int(np.argmin(d))
            if d[k] <= radius * radius + 0.5:
                found.add(int(patch[py[k], px[k]]))
    return found


def seeded_components(score: np.ndarray, allowed: np.ndarray, seeds: np.ndarray, radius: int,
                      min_fraction: float = 0.0) -> np.ndarray:
    """Union of the connected components of {score > 0} & allowed that hold a seed (crop coordinates),
    leaving out those smaller than `min_fraction` of the largest (specks caught by scattered seeds)."""
    inside = (seeds[:, 0] >= 0) & (seeds[:, 0] < score.shape[0]) & (seeds[:, 1] >= 0) & (seeds[:, 1] < score.shape[1])
    region = (score > 0) & allowed
    labels, _ = ndimage.label(region)
    keep = sorted(seed_components(labels, seeds[inside], radius))
    if not keep:
        return np.zeros(score.shape, bool)
    if min_fraction > 0 and len(keep) > 1:
        sizes = ndimage.sum(region, labels, keep)
        keep = [k for k, n in zip(keep, sizes) if n >= min_fraction * sizes.max()]
    return np.isin(labels, keep)


def close_cavity(ring: np.ndarray, pos: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Add to a ring mask its holes that hold a positive point; the detected cavity if the ring is open there."""
    holes = ndimage.binary_fill_holes(ring) & ~ring
    labels, _ = ndimage.label(holes)
    inside = [(y, x) for y, x in pos if 0 <= y < ring.shape[0] and 0 <= x < ring.shape[1] and labels[y, x]]
    if inside:
        return ring | np.isin(labels, sorted({int(labels[q]) for q in inside}))
    return ring | hole


def fill_holes_within(mask: np.ndarray, within: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Fill the holes of `mask` that lie mostly inside `within` (the prior) and hold no negative point."""
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    labels, n = ndimage.label(holes)
    idx = np.arange(1, n + 1)
    keep = np.zeros(n + 1, bool)
    keep[1:] = ndimage.mean(within, labels, idx) >= 0.5
    for y, x in neg:
        if labels[y, x]:
            keep[labels[y, x]] = False
    return mask | keep[labels]


def cut_negatives(comp: np.ndarray, evidence: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Split `comp` between positive and negative seeds by a watershed on -evidence; keep the positive side."""
    from skimage.segmentation import watershed

    inside = [tuple(q) for q in neg if comp[q[0], q[1]]]
    if not inside:
        return comp
    markers = np.zeros(comp.shape, np.int32)
    for y, x in inside:
        markers[y, x] = 2
    for y, x in pos:
        if 0 <= y < comp.shape[0] and 0 <= x < comp.shape[1] and comp[y, x]:
            markers[y, x] = 1
    if not (markers == 1).any():
        return np.zeros_like(comp)
    # Basins are the object centres (high evidence); the split follows the saddle between them.
    return watershed(-evidence, markers, mask=comp) == 1


def fill_small_holes(mask: np.ndarray, max_fraction: float, neg: np.ndarray) -> np.ndarray:
    """Fill holes smaller than max_fraction of the mask's area, never covering a negative point."""
    if not mask.any():
        return mask
    holes = ndimage.binary_fill_holes(mask) & ~mask
    if not holes.any():
        return mask
    labels, n = ndimage.label(holes)
    sizes = ndimage.sum(holes, labels, np.arange(1, n + 1))
    small = np.zeros(n + 1, bool)
    small[1:] = sizes < max_fraction * mask.sum()
    for y, x in neg:
        if labels[y, x]:
            small[labels[y, x]] = False
    return mask | small[labels]


def shape_quality(mask: np.ndarray, evidence: np.ndarray) -> float:
    """In [0, 1]: evidence step across the boundary (inner vs outer 2-pixel band) and compactness."""
    from skimage.measure import perimeter

    inner = mask & ~ndimage.binary_erosion(mask, iterations=2)
    outer = ndimage.binary_dilation(mask, iterations=2) & ~mask
    step = float(evidence[inner].mean() - evidence[outer].mean()) if outer.any() else 0.0
    area = float(mask.sum())
    per = float(perimeter(mask))
    compact = min(1.0, 4 * np.pi * area / per**2) if per > 0 else 0.0
    # A clean blurred edge gives a step of about 0.4 between the 2-pixel bands; a disk's compactness is ~0.9.
    return float(np.clip(0.6 * np.clip(step / 0.4, 0, 1) + 0.4 * np.sqrt(compact), 0, 1))
