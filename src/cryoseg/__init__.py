"""cryoseg: foundation-model segmentation and particle picking for cryo-electron tomograms."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryoseg")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The API and the config classes users set load on first use, so `import cryoseg` stays light (no scipy, no models).
_LAZY = {"segment": "api", "pick": "api", "PickConfig": "pipelines.pick", "SelfPromptConfig": "segment3d.config",
         "MatchingConfig": "matching"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
