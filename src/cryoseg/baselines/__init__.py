"""Classical picking baselines: template matching over rotations, and Laplacian-of-Gaussian blobs."""

from ..polarity import POLARITIES, estimate_polarity
from .log_blobs import LoGConfig, log_blobs, log_response
from .peaks import pick_peaks, robust_zscore
from .template_matching import ScoreMaps, TemplateMatchingConfig, match_template_maps, rotation_set, template_match

__all__ = [
    "POLARITIES",
    "LoGConfig",
    "ScoreMaps",
    "TemplateMatchingConfig",
    "estimate_polarity",
    "log_blobs",
    "log_response",
    "match_template_maps",
    "pick_peaks",
    "robust_zscore",
    "rotation_set",
    "template_match",
]
