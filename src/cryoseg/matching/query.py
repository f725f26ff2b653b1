"""What Hierarchical Feature Matching looks for: the query (the prompted instances' mean feature) and the
negative exemplars (mean features around points on wrong picks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..geometry import equivalent_radius, outside_volume
from .features import VolumeFeatures


@dataclass
class Query:
    """What to look for.

    Attributes:
        vector: (C,) float32 unit feature vector.
        radius: equivalent-sphere radius in voxels of the instances it came from (None if unknown).
        n_instances: how many instances were averaged.
    """

    vector: np.ndarray
    radius: float | None = None
    n_instances: int = 1


def make_query(features: VolumeFeatures, masks: np.ndarray) -> Query:
    """The query of a set of prompted instances: the normalised mean feature over all their voxels.

    Args:
        features: the volume's features.
        masks: (Z, Y, X) bool mask of the instances (connected components count as instances) or int
            instance labels (0 = background, each other value one instance).
    """
    masks = np.asarray(masks)
    if masks.shape != features.shape:
        raise InputError(f"prompt mask shape {masks.shape} does not match the volume shape {features.shape}")
    if masks.dtype == bool:
        _, n = ndimage.label(masks)
    else:
        n = int(len(np.unique(masks[masks != 0])))
    inside = masks != 0
    if n == 0:
        raise InputError("the prompt mask is empty: no prompted instance to build a query from")
    mean = features.masked_mean(inside)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-12:
        raise InputError("the prompted instances' features average to zero; cannot build a query")
    radius = equivalent_radius(inside.sum() / n)
    return Query((mean / norm).astype(np.float32), radius=radius, n_instances=n)


def as_query(features: VolumeFeatures, query: Query | np.ndarray) -> Query:
    """`query` as a `Query` with a unit (C,) vector: a `Query`, a (C,) feature vector, or a (Z, Y, X) mask or
    instance-label volume of the prompted instances (built with `make_query`)."""
    if isinstance(query, Query):
        vector = np.asarray(query.vector, np.float32).reshape(-1)
        radius = query.radius
    else:
        arr = np.asarray(query)
        if arr.shape == features.shape:
            return make_query(features, arr)
        if arr.ndim != 1:
            raise InputError(
                f"query must be a ({features.channels},) feature vector or a {features.shape} mask, got {arr.shape}"
            )
        vector, radius = arr.astype(np.float32), None
    if vector.shape != (features.channels,):
        raise InputError(f"query has {vector.shape[0]} channels, the features have {features.channels}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-12:
        raise InputError("query vector is zero or not finite")
    return Query(vector / norm, radius=radius)


def check_points(points: np.ndarray | None, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """(N, 3) float64 z, y, x voxels from `points` (None or empty: (0, 3)); refuses a point that is not finite or
    lies outside a volume of `shape` (Z, Y, X) by the inside rule of `cryoseg.geometry`. `what` names the points
    in messages."""
    if points is None:
        return np.zeros((0, 3))
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        raise InputError(f"{what} must be an (N, 3) array of finite z, y, x voxel coordinates, got {arr.shape}")
    outside = outside_volume(arr, shape)
    if np.any(outside):
        raise InputError(f"{what} {arr[np.argmax(outside)].tolist()} lies outside the volume of shape {shape}")
    return arr


def _ball_offsets(radius: float) -> np.ndarray:
    """(M, 3) integer z, y, x offsets within `radius` voxels of the origin."""
    r = int(np.floor(radius))
    grid = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1].reshape(3, -1).T
    return grid[(grid**2).sum(axis=1) <= radius**2 + 1e-9].astype(np.float64)


def negative_vectors(features: VolumeFeatures, points: np.ndarray, radius: float) -> np.ndarray:
    """Unit features of negative exemplars: the mean feature over a ball of `radius` voxels around each point.

    Args:
        points: (N, 3) z, y, x in voxels.

    Returns:
        (N, C) float32.
    """
    offsets = _ball_offsets(max(1.0, radius))
    upper = np.asarray(features.shape, np.float64) - 1
    out = np.empty((len(points), features.channels), np.float32)
    for i, p in enumerate(np.asarray(points, np.float64)):
        ball = np.clip(np.round(p) + offsets, 0, upper)
        mean = features.sample(ball).mean(axis=0)
        out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out
