"""Peak picking on a dense score volume: local maxima above a threshold, thinned by 3D NMS."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..matching.nms import nms


def robust_zscore(values: np.ndarray, sample_step: int = 2) -> tuple[float, float]:
    """(median, robust standard deviation 1.4826 * MAD) of a score volume, from a strided subsample.

    Args:
        values: (Z, Y, X) float array.
        sample_step: take every n-th voxel along each axis (the statistics of a noise-dominated map
            need no more, and this keeps it cheap on large tomograms).
    """
    return robust_stats(np.asarray(values[::sample_step, ::sample_step, ::sample_step]))


def robust_stats(sample: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 * MAD) of the finite values of `sample` (any shape); (0, 1) when there are none."""
    sample = np.asarray(sample, dtype=np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median))) * 1.4826
    return median, mad if mad > 0 else float(sample.std() or 1.0)


def peak_size(radius: float) -> int:
    """Side of the local-maximum neighbourhood for peaks at least `radius` apart (about radius / 2 each way)."""
    return max(3, 2 * int(radius / 2) + 1)


def local_peaks(scores: np.ndarray, radius: float, threshold: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Every local maximum of `scores` (Z, Y, X) within `peak_size(radius)` at least `threshold`: (points (K, 3)
    int64 z, y, x voxels, values (K,) float64), unordered."""
    peak = (scores >= threshold) & (scores == ndimage.maximum_filter(scores, size=peak_size(radius), mode="nearest"))
    points = np.argwhere(peak)
    return points, scores[tuple(points.T)].astype(np.float64)


def select_peaks(points: np.ndarray, values: np.ndarray, shape: tuple[int, ...], radius: float, threshold: float,
                 top_k: int | None = None, border: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Of candidate peaks (points (K, 3) z, y, x in a volume of `shape`, values (K,)): those at least `threshold`,
    not within `border` voxels of a face, at least `radius` apart, best first (at most `top_k`)."""
    points = np.asarray(points).reshape(-1, 3)
    keep = values >= threshold
    b = int(np.ceil(border))
    if b > 0:
        keep &= np.all((points >= b) & (points < np.asarray(shape) - b), axis=1)
    points, values = points[keep], values[keep]
    order = nms(points.astype(np.float64), values, radius, top_k)
    return points[order].astype(np.float64), values[order]


def pick_peaks(scores: np.ndarray, radius: float, threshold: float, top_k: int | None = None,
               border: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of `scores` at least `threshold`, at least `radius` apart, best first.

    Args:
        scores: (Z, Y, X) float score volume.
        radius: NMS radius in voxels (also sets the local-maximum neighbourhood, radius / 2).
        threshold: smallest score of a peak.
        top_k: most peaks returned (None: all).
        border: ignore peaks closer than this many voxels to the volume's faces.

    Returns:
        (points (K, 3) float64 z, y, x voxels, scores (K,) float64).
    """
    if scores.ndim != 3:
        raise InputError(f"expected a (Z, Y, X) score volume, got shape {scores.shape}")
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"peak radius must be a positive number of voxels, got {radius}")
    points, values = local_peaks(scores, radius, threshold)
    return select_peaks(points, values, scores.shape, radius, threshold, top_k, border)
