"""Hierarchical Feature Matching: multi-view per-voxel features, coarse-to-fine similarity search, NMS.

Modules, bottom up: `features` (per-voxel features from the z, y, x views), `config` (the search's settings),
`cells` (the pyramid's cell grids), `query` (the query and negative exemplars), `nms` (peaks and non-maximum
suppression), `refine` (sub-cell refinement of picks) and `search` (`match`, the coarse-to-fine search).
"""

from ..geometry import VIEWS as VIEW_NAMES  # the views' names, defined once in cryoseg.geometry
from .cells import cell_centers
from .config import MODES, MatchingConfig
from .features import ViewStack, VolumeFeatures, build_volume_features
from .nms import local_maxima, nms
from .query import Query, make_query, negative_vectors
from .search import LevelStats, MatchResult, match

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
