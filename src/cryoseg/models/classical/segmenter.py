"""`ClassicalSegmenter`: the classical method (`decode`) behind the `PromptableSegmenter` interface.

`embed` normalises (percentile clip, zero mean, unit variance) and denoises the slice; `predict` checks the
prompts by the rules every backend shares (`base.check_prompts`), turns them into pixel prompts and decodes
each one.

Logits: `MaskPrediction.logits` has the slice's full resolution (h, w) = (H, W), value
gain * score, forced to >= +0.5 inside the mask and <= -0.5 outside, so `masks == logits > 0` exactly.
`mask_logits` must have that shape too: (B, H, W), as this backend returns them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ...errors import InputError
from ..base import CheckedPrompts, MaskPrediction, PromptableSegmenter, SliceEmbedding, check_prompts
from ..filterbank import robust_normalize
from .config import ClassicalConfig
from .decode import PixelPrompt, decode_prompt

# Goes into the signature: bump it when a change to the method changes the masks.
ALGORITHM_VERSION = 1


class ClassicalSegmenter(PromptableSegmenter):
    """Seeded adaptive-threshold region growing with a mask prior: a weight-free baseline (see `decode`)."""

    name = "classical"

    def __init__(self, config: ClassicalConfig | None = None) -> None:
        self.config = config or ClassicalConfig()

    # ----------------------------------------------------------------- embedding
    def signature(self) -> dict[str, Any]:
        """Only what changes the embedding (the denoised slice): prediction settings do not invalidate caches."""
        return {"name": self.name, "algorithm_version": ALGORITHM_VERSION, "weights": None,
                "smoothing_sigma": self.config.smoothing_sigma,
                "clip_percentiles": list(self.config.clip_percentiles)}

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        """Normalise and denoise one slice.

        Args:
            image: (H, W) real array, any range.

        Returns:
            SliceEmbedding whose `data` is {"smooth": (H, W) float32}.
        """
        arr = np.asarray(image)
        if arr.ndim != 2 or min(arr.shape) < 2:
            raise InputError(f"classical segmenter expects a 2D slice (H, W), got an array of shape {arr.shape}")
        norm = robust_normalize(arr, self.config.clip_percentiles)
        smooth = ndimage.gaussian_filter(norm, self.config.smoothing_sigma) if self.config.smoothing_sigma else norm
        return SliceEmbedding({"smooth": smooth.astype(np.float32)}, (int(arr.shape[0]), int(arr.shape[1])))

    def embedding_arrays(self, embedding: SliceEmbedding) -> dict[str, np.ndarray]:
        return {"smooth": np.asarray(self._smooth(embedding))}

    def embedding_from_arrays(self, arrays: dict[str, np.ndarray], image_shape: tuple[int, int]) -> SliceEmbedding:
        if "smooth" not in arrays:
            raise InputError("cached classical embedding lacks the 'smooth' array; delete the cache to rebuild it")
        return SliceEmbedding({"smooth": np.asarray(arrays["smooth"], dtype=np.float32)}, tuple(image_shape))

    @staticmethod
    def _smooth(embedding: SliceEmbedding) -> np.ndarray:
        data = embedding.data
        if not isinstance(data, dict) or "smooth" not in data:
            raise InputError("this embedding was not made by the classical segmenter; embed the slice with it first")
        return data["smooth"]

    # ----------------------------------------------------------------- prediction
    def predict(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                boxes: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                multimask: bool = False) -> MaskPrediction:
        """Decode B prompts on one embedded slice (prompt rules: `check_prompts`).

        Args:
            embedding: from `embed`.
            points: (B, P, 2) float (y, x) in slice pixels; P may be 0 when boxes are given.
            point_labels: (B, P) int, 1 = foreground, 0 = background, -1 = padding (ignored).
            boxes: optional (B, 4) float (y0, x0, y1, x1) in slice pixels.
            mask_logits: optional (B, H, W) prior logits, normally `MaskPrediction.logits[:, k]` of the
                previous slice.
            multimask: three candidates per prompt (loose, middle, tight) instead of one.

        Returns:
            MaskPrediction with masks (B, M, H, W) bool, logits (B, M, H, W) float32, iou_scores (B, M)
            float32 in [0, 1]; M = 3 with multimask, else 1.
        """
        smooth = self._smooth(embedding)
        H, W = smooth.shape
        checked = check_prompts((H, W), points, point_labels, boxes, mask_logits, logits_shape=(H, W))
        prompts = _pixel_prompts(checked, (H, W))
        fractions = self.config.thresholds if multimask else (self.config.thresholds[1],)
        M, B = len(fractions), len(prompts)
        masks = np.zeros((B, M, H, W), bool)
        logits = np.full((B, M, H, W), -self.config.logit_gain / 2, np.float32)
        scores = np.zeros((B, M), np.float32)
        smoothed: dict[float, np.ndarray] = {0.0: smooth}

        def smooth_at(extra: float) -> np.ndarray:
            # Extra denoising is computed once per call and shared by every prompt that needs it.
            if extra not in smoothed:
                smoothed[extra] = ndimage.gaussian_filter(smooth, extra)
            return smoothed[extra]

        for b, prompt in enumerate(prompts):
            decode_prompt(smooth_at, (H, W), prompt, fractions, self.config, masks[b], logits[b], scores[b])
        return MaskPrediction(masks=masks, logits=logits, iou_scores=scores)


def _pixel_prompts(checked: CheckedPrompts, shape: tuple[int, int]) -> list[PixelPrompt]:
    """One `PixelPrompt` per checked prompt: points rounded to their pixel, boxes to the pixels they cover."""
    H, W = shape
    used = checked.labels >= 0
    # Padding points may hold anything (NaN included); only real points are rounded (clipping only matters for
    # padding: real points passed check_prompts' inside rule).
    pts = np.where(used[..., None], checked.points, 0.0)
    ipts = np.clip(np.rint(pts), 0, [H - 1, W - 1]).astype(np.int64)
    prompts = []
    for b in range(len(checked)):
        box = None
        if checked.boxes is not None:
            y0, x0, y1, x1 = checked.boxes[b]
            box = (max(0, int(np.floor(y0))), max(0, int(np.floor(x0))),
                   min(H - 1, int(np.ceil(y1))), min(W - 1, int(np.ceil(x1))))
        labels = checked.labels[b]
        prompts.append(PixelPrompt(pos=ipts[b][labels == 1], neg=ipts[b][labels == 0], box=box,
                                   prior=None if checked.mask_logits is None else checked.mask_logits[b]))
    return prompts
