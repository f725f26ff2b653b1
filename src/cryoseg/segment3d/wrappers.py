"""Transparent wrappers around a 2D promptable segmenter: `DelegatingSegmenter` passes everything through, and its
subclasses change one thing (`CountingSegmenter` counts the model work, `InvertedContrast` negates every slice);
`matched_to_polarity` puts a model trained on one density polarity in front of a tomogram of the other."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..models.base import MaskPrediction, PromptableSegmenter, SliceEmbedding
from ..polarity import check_polarity, estimate_polarity

logger = logging.getLogger(__name__)

# the polarity of a volume is estimated on its central part at most this many voxels a side (a constant cost on
# tomograms of any size, lazily loaded ones included), at the scale of a small particle (voxels)
POLARITY_SAMPLE_SIDE = 160
POLARITY_RADIUS = 3.0


class DelegatingSegmenter(PromptableSegmenter):
    """Delegates every call and attribute (device, spec, polarity, ...) to `inner`."""

    def __init__(self, inner: PromptableSegmenter) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", type(inner).__name__)

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (copy/pickle): avoid infinite recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def polarity(self) -> str | None:
        return getattr(self.inner, "polarity", None)

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        return self.inner.embed(image)

    def predict(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                boxes: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                multimask: bool = False) -> MaskPrediction:
        return self.inner.predict(embedding, points, point_labels, boxes=boxes, mask_logits=mask_logits,
                                  multimask=multimask)

    def signature(self) -> dict[str, Any]:
        return self.inner.signature()

    def embedding_arrays(self, embedding: SliceEmbedding) -> dict[str, np.ndarray]:
        return self.inner.embedding_arrays(embedding)

    def embedding_from_arrays(self, arrays: dict[str, np.ndarray], image_shape: tuple[int, int]) -> SliceEmbedding:
        return self.inner.embedding_from_arrays(arrays, image_shape)


class CountingSegmenter(DelegatingSegmenter):
    """Counts `embed` calls, `predict` calls and decoded prompts (for reports and tests)."""

    def __init__(self, inner: PromptableSegmenter) -> None:
        super().__init__(inner)
        self.n_embed = 0
        self.n_predict = 0
        self.n_prompts = 0

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        self.n_embed += 1
        return super().embed(image)

    def predict(self, embedding: SliceEmbedding, points: np.ndarray, point_labels: np.ndarray,
                boxes: np.ndarray | None = None, mask_logits: np.ndarray | None = None,
                multimask: bool = False) -> MaskPrediction:
        self.n_predict += 1
        self.n_prompts += int(np.asarray(points).shape[0])
        return super().predict(embedding, points, point_labels, boxes=boxes, mask_logits=mask_logits,
                               multimask=multimask)


class InvertedContrast(DelegatingSegmenter):
    """`inner` sees every slice negated: a model trained on one density polarity (`inner.polarity`) used on a
    tomogram of the other. Its embeddings are cached apart from the plain model's (the signature says so)."""

    @property
    def polarity(self) -> str | None:
        """The polarity this wrapper takes: the opposite of the model's."""
        return {"dark": "bright", "bright": "dark"}.get(getattr(self.inner, "polarity", None))

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        return self.inner.embed(-np.asarray(image, np.float32))

    def signature(self) -> dict[str, Any]:
        return {**self.inner.signature(), "inverted_contrast": True}


def tomogram_polarity(volume: Any) -> str:
    """"dark" or "bright": how density appears in a (Z, Y, X) array-like (numpy, memory-mapped or lazily loaded),
    estimated (`cryoseg.polarity.estimate_polarity`, particle radius `POLARITY_RADIUS`) on its central
    `POLARITY_SAMPLE_SIDE`^3 voxels."""
    starts = [max(0, (n - POLARITY_SAMPLE_SIDE) // 2) for n in volume.shape]
    centre = tuple(slice(s, s + POLARITY_SAMPLE_SIDE) for s in starts)
    return estimate_polarity(np.asarray(volume[centre], np.float32), POLARITY_RADIUS)


def resolved_polarity(segmenter: PromptableSegmenter, volume: Any, polarity: str = "auto") -> str:
    """`polarity` ("auto", "dark" or "bright", checked), with "auto" replaced by `tomogram_polarity(volume)` when
    `segmenter` was trained on one polarity; "auto" stays for a segmenter that takes either (nothing to estimate)."""
    check_polarity(polarity)
    if polarity == "auto" and getattr(segmenter, "polarity", None) is not None:
        return tomogram_polarity(volume)
    return polarity


def matched_to_polarity(segmenter: PromptableSegmenter, volume: Any, polarity: str = "auto") -> PromptableSegmenter:
    """`segmenter`, or `InvertedContrast(segmenter)` when it was trained on one polarity (`segmenter.polarity`) and
    the tomogram's density appears the other way.

    Args:
        segmenter: any 2D promptable segmenter.
        volume: (Z, Y, X) array-like (numpy, memory-mapped or lazily loaded).
        polarity: "dark", "bright", or "auto" (`resolved_polarity`).
    """
    polarity = resolved_polarity(segmenter, volume, polarity)
    wanted = getattr(segmenter, "polarity", None)
    if wanted is None or polarity == wanted:
        return segmenter
    logger.info("%s was trained on %s density and this tomogram's density is %s: it is shown the slices negated",
                getattr(segmenter, "name", "the segmenter"), wanted, polarity)
    return InvertedContrast(segmenter)
