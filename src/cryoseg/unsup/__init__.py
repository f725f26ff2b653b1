"""The unsupervised multi-scale method: attention affinities (Stable Diffusion self-attention, or weight-free
features), spectral maps, aggregation, z-smoothing, adaptive thresholding and region splitting, which together make
membrane and particle pseudo-labels for a student network (`cryoseg.pipelines.unsup`).

Submodules are imported on use, so `import cryoseg.unsup` loads neither torch nor diffusers.
"""

from ..lazy import lazy_exports

_EXPORTS: dict[str, str] = {}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
