"""cryoseg: foundation-model segmentation and particle picking for cryo-electron tomograms."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .lazy import lazy_exports

try:
    __version__ = version("cryoseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The API and the config classes users set load on first use, so `import cryoseg` stays light (no scipy, no models).
_EXPORTS = {"segment": "api", "pick": "api", "PickConfig": "pipelines.config", "SelfPromptConfig": "segment3d.config",
            "MatchingConfig": "matching"}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
