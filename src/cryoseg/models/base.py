"""The two model interfaces every method runs on: a promptable 2D segmenter and a dense feature extractor.

Coordinates are (y, x) in the slice's own pixels, in and out. Images are 2D float arrays (H, W) of
arbitrary range; each backend normalises them itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class SliceEmbedding:
    """The expensive, prompt-independent result of embedding one 2D slice.

    Attributes:
        data: backend-specific payload (an image-embedding tensor, or filtered images for classical backends).
        image_shape: (H, W) of the original slice.
    """

    data: Any
    image_shape: tuple[int, int]


@dataclass
class MaskPrediction:
    """Masks decoded from a batch of B prompts on one slice.

    Attributes:
        masks: (B, M, H, W) bool at the slice's resolution; M = 3 with multimask, else 1.
        logits: (B, M, h, w) float32 low-resolution mask logits (>0 is inside); feed one back as `mask_logits`.
        iou_scores: (B, M) float32 predicted IoU (confidence) of each mask.
    """

    masks: np.ndarray
    logits: np.ndarray
    iou_scores: np.ndarray

    def best(self) -> MaskPrediction:
        """Keep, per prompt, only the mask with the highest predicted IoU (M becomes 1)."""
        idx = np.argmax(self.iou_scores, axis=1)
        rows = np.arange(len(idx))
        return MaskPrediction(self.masks[rows, idx][:, None], self.logits[rows, idx][:, None],
                              self.iou_scores[rows, idx][:, None])


class PromptableSegmenter(ABC):
    """A 2D segmenter: `embed` once per slice, then `predict` cheaply for any number of prompts."""

    name: str = "segmenter"

    @abstractmethod
    def embed(self, image: np.ndarray) -> SliceEmbedding:
        """Embed one slice. `image`: (H, W) float array, any range."""

    @abstractmethod
    def predict(
        self,
        embedding: SliceEmbedding,
        points: np.ndarray,
        point_labels: np.ndarray,
        boxes: np.ndarray | None = None,
        mask_logits: np.ndarray | None = None,
        multimask: bool = False,
    ) -> MaskPrediction:
        """Decode B prompts on one embedded slice in one batched call.

        Args:
            embedding: from `embed`.
            points: (B, P, 2) float, (y, x) in slice pixels.
            point_labels: (B, P) int, 1 = foreground, 0 = background (negative point).
            boxes: optional (B, 4) float, (y0, x0, y1, x1) in slice pixels.
            mask_logits: optional (B, h, w) float32 prior logits as returned in `MaskPrediction.logits`.
            multimask: return 3 candidate masks per prompt instead of 1.
        """

    def signature(self) -> dict[str, Any]:
        """What determines an embedding (model name, weights hash, preprocessing); keys the embedding cache."""
        return {"name": self.name}

    def embedding_arrays(self, embedding: SliceEmbedding) -> dict[str, np.ndarray]:
        """Flatten an embedding into named numpy arrays, for the on-disk cache."""
        return {"data": np.asarray(embedding.data)}

    def embedding_from_arrays(self, arrays: dict[str, np.ndarray], image_shape: tuple[int, int]) -> SliceEmbedding:
        """Inverse of `embedding_arrays`."""
        return SliceEmbedding(arrays["data"], image_shape)


@dataclass
class FeatureMap:
    """Dense features of B images.

    Attributes:
        features: (B, C, h, w) float32. Cell (i, j) covers original pixels
            [i * stride[0], (i + 1) * stride[0]) x [j * stride[1], (j + 1) * stride[1]).
        stride: (sy, sx) original pixels per feature cell (patch size divided by the resize scale).
        image_shape: (H, W) of the original images.
        patch_size: the model's patch size in model-input pixels (1 for per-pixel backends).
    """

    features: np.ndarray
    stride: tuple[float, float]
    image_shape: tuple[int, int]
    patch_size: int

    def cell_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (y of each row, x of each column) of the feature-cell centres."""
        h, w = self.features.shape[-2:]
        return (np.arange(h) + 0.5) * self.stride[0] - 0.5, (np.arange(w) + 0.5) * self.stride[1] - 0.5


class FeatureExtractor(ABC):
    """Turns images into a dense grid of feature vectors."""

    name: str = "features"

    @abstractmethod
    def extract(self, images: np.ndarray) -> FeatureMap:
        """`images`: (B, H, W) float array, any range. Returns a `FeatureMap`."""

    def signature(self) -> dict[str, Any]:
        """What determines the features (model name, weights hash, preprocessing); keys the embedding cache."""
        return {"name": self.name}
