"""A transparent wrapper that counts the model work a segmentation run does (for reports and tests)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models.base import MaskPrediction, PromptableSegmenter, SliceEmbedding


class CountingSegmenter(PromptableSegmenter):
    """Delegates everything to `inner`; counts `embed` calls, `predict` calls and decoded prompts."""

    def __init__(self, inner: PromptableSegmenter) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)
        self.n_embed = 0
        self.n_predict = 0
        self.n_prompts = 0

    def __getattr__(self, attr: str) -> Any:  # device, spec, ... of the wrapped backend
        if attr == "inner":  # not set yet (copy/pickle): avoid infinite recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        self.n_embed += 1
        return self.inner.embed(image)

    def predict(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                boxes: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                multimask: bool = False) -> MaskPrediction:
        self.n_predict += 1
        self.n_prompts += int(np.asarray(points).shape[0])
        return self.inner.predict(embedding, points, point_labels, boxes=boxes, mask_logits=mask_logits,
                                  multimask=multimask)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()

    def embedding_arrays(self, embedding: SliceEmbedding) -> dict[str, np.ndarray]:
        return self.inner.embedding_arrays(embedding)

    def embedding_from_arrays(self, arrays: dict[str, np.ndarray], image_shape: tuple[int, int]) -> SliceEmbedding:
        return self.inner.embedding_from_arrays(arrays, image_shape)
