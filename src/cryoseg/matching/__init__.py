"""Hierarchical Feature Matching: multi-view per-voxel features, coarse-to-fine similarity search, NMS."""

from ..geometry import VIEWS as VIEW_NAMES  # the views' names, defined once in cryoseg.geometry
from .features import ViewStack, VolumeFeatures, build_volume_features
from .hierarchical import (
    MODES,
    LevelStats,
    MatchingConfig,
    MatchResult,
    Query,
    cell_centers,
    make_query,
    match,
    negative_vectors,
)
from .nms import local_maxima, nms

__all__ = [
    "MODES",
    "VIEW_NAMES",
    "LevelStats",
    "MatchResult",
    "MatchingConfig",
    "Query",
    "ViewStack",
    "VolumeFeatures",
    "build_volume_features",
    "cell_centers",
    "local_maxima",
    "make_query",
    "match",
    "negative_vectors",
    "nms",
]
