"""Prompted 3D instance segmentation with a 2D promptable segmenter: Cross-Plane Self-Prompting.

`CrossPlaneSegmenter` grows point prompts into 3D instances (embeddings shared, instances accumulating over calls),
configured by `SelfPromptConfig`, recording each prompt's outcome as an `InstanceInfo`. The one-call pipeline and
its result live in `cryoseg.pipelines.segment`.
"""

from .config import SelfPromptConfig
from .engine import CrossPlaneSegmenter
from .prompts import as_points
from .records import InstanceInfo

__all__ = ["CrossPlaneSegmenter", "InstanceInfo", "SelfPromptConfig", "as_points"]
