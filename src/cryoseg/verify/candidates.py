"""Where to look: the proposals of feature matching, joined by blobs of the prompted size."""

from __future__ import annotations

import numpy as np

from ..baselines.log_blobs import LoGConfig, log_blobs


def blob_candidates(volume: np.ndarray, radius: float, polarity: str, threshold: float,
                    top_k: int | None = None) -> np.ndarray:
    """(N, 3) z, y, x voxels of Laplacian-of-Gaussian blobs of `radius` voxels and the given polarity, strongest
    first (at most `top_k`)."""
    config = LoGConfig(scales=(1.0,), polarity=polarity, threshold=threshold, top_k=top_k)
    return log_blobs(volume, radius, config).coords


def outside(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: the points (N, 3) z, y, x that fall on no instance of `labels` (Z, Y, X)."""
    idx = np.clip(np.round(points).astype(np.int64), 0, np.array(labels.shape) - 1)
    return labels[tuple(idx.T)] == 0
