"""Prompted 3D instance segmentation with a 2D promptable segmenter: Cross-Plane Self-Prompting.

`CrossPlaneSegmenter` grows point prompts into 3D instances (embeddings shared, instances accumulating over calls),
configured by `SelfPromptConfig`, recording each prompt's outcome as an `InstanceInfo`. The one-call pipeline and
its result live in `cryoseg.pipelines.segment`. Exports load on first use (the CLI reads the config's defaults).
"""

from ..lazy import lazy_exports

_EXPORTS = {"CrossPlaneSegmenter": "engine", "InstanceInfo": "records", "SelfPromptConfig": "config",
            "as_points": "prompts"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
