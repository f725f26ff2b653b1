"""Model backends behind two small interfaces: promptable 2D segmenters and dense feature extractors.

`load_segmenter(name)` / `load_feature_extractor(name)` load any registered model; `list_models()` says which
weights are on this machine. Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from .base import FeatureExtractor, FeatureMap, MaskPrediction, PromptableSegmenter, SliceEmbedding
from .loaders import load_feature_extractor, load_segmenter
from .registry import REGISTRY, ModelStatus, get_spec, list_models, model_names
from .spec import ModelSpec

__all__ = [
    "REGISTRY",
    "FeatureExtractor",
    "FeatureMap",
    "MaskPrediction",
    "ModelSpec",
    "ModelStatus",
    "PromptableSegmenter",
    "SliceEmbedding",
    "get_spec",
    "list_models",
    "load_feature_extractor",
    "load_segmenter",
    "model_names",
]
