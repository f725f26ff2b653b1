"""End-to-end pipelines. `segment`: the prompted instances in 3D; `pick`: one-prompt segmentation and picking of a
whole tomogram (CryoSAM); `output`: the one writer of a run folder.

Submodules are imported on use, so `import cryoseg.pipelines` stays light.
"""

from ..lazy import lazy_exports

_EXPORTS = {"PickConfig": "config", "PickResult": "pick", "pick_instances": "pick", "RunResult": "result",
            "SegmentResult": "segment", "segment_instances": "segment"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
