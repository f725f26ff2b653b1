"""Per-slice features and embeddings of the z, y and x views of a volume, with a signed on-disk cache (zarr).

`extract_view_features` gives dense feature stacks for matching; `SliceEmbedder` gives segmenter
embeddings one slice at a time for prompting. Both reuse what the cache folder already holds.
"""

from __future__ import annotations

from .features import FeatureMapStack, ViewFeatures, ViewFeatureStack, extract_view_features
from .slices import SliceEmbedder

__all__ = ["FeatureMapStack", "SliceEmbedder", "ViewFeatureStack", "ViewFeatures", "extract_view_features"]
