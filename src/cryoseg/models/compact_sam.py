"""compact-sam behind the `PromptableSegmenter` interface: the transformers SAM backend on low-passed slices."""

from __future__ import annotations

from typing import Any

import numpy as np

from .compact import LOW_PASS_SIGMA
from .hf_segmenters import HFPromptableSegmenter


class CompactSamSegmenter(HFPromptableSegmenter):
    """`HFPromptableSegmenter` for compact-sam: every slice is low-passed by `LOW_PASS_SIGMA` first, in training
    (`cryoseg.pipelines.compact`) and use alike. It was trained on the simulator's dark density only, so it declares
    `polarity = "dark"` and cross-plane self-prompting shows it bright tomograms negated.

    Args:
        model: the `SamModel` of `compact_sam_config`, on its device, eval mode.
        weights_hash: identifies the weights in the embedding cache's key.
    """

    polarity = "dark"

    def __init__(self, model: Any, weights_hash: str) -> None:
        super().__init__(model, "sam", "compact-sam", weights_hash)

    def model_input(self, images: np.ndarray, geometry: Any, to_input: Any) -> Any:
        """(H, W) or (B, H, W) slices, each low-passed, then SAM's input."""
        from scipy import ndimage

        arr = np.asarray(images, np.float32)
        sigma = (0, LOW_PASS_SIGMA, LOW_PASS_SIGMA) if arr.ndim == 3 else LOW_PASS_SIGMA
        return super().model_input(ndimage.gaussian_filter(arr, sigma), geometry, to_input)

    def signature(self) -> dict[str, Any]:
        return {**super().signature(), "low_pass_sigma": LOW_PASS_SIGMA}
