"""Peak finding on score grids and greedy 3D non-maximum suppression of scored points."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError


def local_maxima(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Cells that are the maximum of their 3x3x3 neighbourhood and at least `threshold`.

    Args:
        scores: (nz, ny, nx) float; NaN marks cells that were not evaluated (never a peak, never a neighbour).
        threshold: minimum score of a peak.

    Returns:
        (P, 3) int cell indices (z, y, x).
    """
    filled = np.where(np.isnan(scores), -np.inf, scores)
    peak = (filled >= threshold) & (filled == ndimage.maximum_filter(filled, size=3, mode="constant",
                                                                       cval=-np.inf))
    return np.argwhere(peak)


def nms(points: np.ndarray, scores: np.ndarray, radius: float, top_k: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression: keep the best point, drop every point within `radius`, repeat.

    Args:
        points: (N, 3) float, z, y, x in voxels.
        scores: (N,) float, higher is better.
        radius: suppression radius in voxels (a kept point suppresses others closer than or at this distance).
        top_k: stop after this many kept points (None: no limit).

    Returns:
        (K,) int indices into `points`, by decreasing score.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(points) != len(scores):
        raise InputError(f"nms needs one score per point, got {len(points)} points and {len(scores)} scores")
    if not np.isfinite(radius) or radius < 0:
        raise InputError(f"NMS radius must be a non-negative number of voxels, got {radius}")
    if top_k is not None and top_k < 0:
        raise InputError(f"top_k must be >= 0, got {top_k}")
    order = np.argsort(-scores, kind="stable")
    limit = len(order) if top_k is None else min(top_k, len(order))
    if radius == 0 or len(order) == 0:
        return order[:limit]
    tree = cKDTree(points)
    suppressed = np.zeros(len(points), bool)
    keep: list[int] = []
    for i in order:
        if len(keep) >= limit:
            break
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed[tree.query_ball_point(points[i], radius)] = True
    return np.asarray(keep, dtype=np.intp)
