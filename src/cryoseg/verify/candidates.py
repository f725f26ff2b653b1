"""Where to look: the proposals of feature matching, joined by blobs of the prompted size."""

from __future__ import annotations

import numpy as np

from ..baselines.log_blobs import LoGConfig, log_blobs


def polarity_at(volume: np.ndarray, centres: np.ndarray, radius: float) -> str:
    """"dark" or "bright": how the prompted particles stand out from the tomogram's mean.

    Args:
        volume: (Z, Y, X) low-passed tomogram.
        centres: (P, 3) z, y, x voxels of the prompted particles.
        radius: their radius in voxels (the core within half of it is sampled).
    """
    h = max(1, int(radius // 2))
    inside = [volume[tuple(slice(max(0, int(round(c)) - h), int(round(c)) + h + 1) for c in centre)].mean()
              for centre in np.asarray(centres).reshape(-1, 3)]
    step = max(1, int(radius // 2))
    return "dark" if float(np.mean(inside)) < float(volume[::step, ::step, ::step].mean()) else "bright"


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
