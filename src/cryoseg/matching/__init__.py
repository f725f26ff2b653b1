"""Hierarchical Feature Matching: multi-view per-voxel features, coarse-to-fine similarity search, NMS.

Modules, bottom up: `features` (per-voxel features from the z, y, x views), `config` (the search's settings),
`cells` (the pyramid's cell grids), `query` (the query and negative exemplars), `nms` (peaks and non-maximum
suppression), `refine` (sub-cell refinement of picks) and `search` (`match`, the coarse-to-fine search).
Exports load on first use (the CLI reads the config's defaults without loading scipy).
"""

from ..lazy import lazy_exports

_EXPORTS = {"cell_centers": "cells", "MODES": "config", "MatchingConfig": "config", "ViewStack": "features",
            "VolumeFeatures": "features", "build_volume_features": "features", "local_maxima": "nms",
            "Query": "query", "make_query": "query", "negative_vectors": "query", "LevelStats": "search",
            "MatchResult": "search", "match": "search"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
