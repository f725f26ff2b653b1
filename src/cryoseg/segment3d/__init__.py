"""Prompted 3D instance segmentation with a 2D promptable segmenter: Cross-Plane Self-Prompting.

Public API: `segment_instances` (one call) or `CrossPlaneSegmenter` (instances accumulate over calls,
embeddings shared), configured by `SelfPromptConfig`, returning `SegmentationResult`.
"""

from .config import SelfPromptConfig
from .engine import CrossPlaneSegmenter, segment_instances
from .prompts import as_points
from .result import InstanceInfo, SegmentationResult

__all__ = ["CrossPlaneSegmenter", "InstanceInfo", "SegmentationResult", "SelfPromptConfig", "as_points",
           "segment_instances"]
