"""End-to-end pipelines. `segment`: the prompted instances in 3D; `pick`: one-prompt segmentation and picking of a
whole tomogram (CryoSAM); `output`: the one writer of a run folder.

Submodules are imported on use, so `import cryoseg.pipelines` stays light.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"PickConfig": "pick", "PickResult": "pick", "pick_instances": "pick", "RunResult": "result",
            "SegmentResult": "segment", "segment_instances": "segment"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
