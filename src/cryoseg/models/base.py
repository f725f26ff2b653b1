"""The two model interfaces every method runs on: a promptable 2D segmenter and a dense feature extractor.

Coordinates are (y, x) in the slice's own pixels, in and out. Images are 2D float arrays (H, W) of
arbitrary range; each backend normalises them itself. `check_prompts` is the one set of prompt rules every
segmenter applies, so that a prompt one backend refuses is refused by all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import outside_volume

# Images per feature-extractor call and per forward pass of a transformers extractor. One number for both, so
# that by default each call of the embed module is one forward pass.
DEFAULT_FEATURE_BATCH_SIZE = 4


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


@dataclass(frozen=True)
class CheckedPrompts:
    """The prompts of one `predict` call, as `check_prompts` accepted them.

    Attributes:
        points: (B, P, 2) float64, (y, x) in slice pixels; those with label -1 are padding and unchecked.
        labels: (B, P) int64: 1 foreground, 0 background (negative), -1 padding.
        boxes: (B, 4) float64, (y0, x0, y1, x1) in slice pixels, or None.
        mask_logits: (B, h, w) float32 prior logits, or None.
    """

    points: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray | None
    mask_logits: np.ndarray | None

    def __len__(self) -> int:
        return int(self.points.shape[0])


def check_prompts(
    image_shape: tuple[int, int],
    points: np.ndarray,
    point_labels: np.ndarray,
    boxes: np.ndarray | None,
    mask_logits: np.ndarray | None,
    logits_shape: tuple[int, int],
) -> CheckedPrompts:
    """The prompt rules of every segmenter; raises `InputError` naming the first rule broken.

    A prompt needs at least one point labelled 0 or 1, or a box: mask logits alone are not a prompt. Points
    must lie in the slice by `cryoseg.geometry`'s rule (-0.5 <= y < H - 0.5, the same for x); box corners may also
    lie on its far edges (-0.5 <= y <= H - 0.5). Mask logits must have exactly the shape the backend
    returns them in, so that only a backend's own logits are fed back to it.

    Args:
        image_shape: (H, W) of the slice.
        points: (B, P, 2) float, (y, x) in slice pixels; P may be 0 when boxes are given.
        point_labels: (B, P) int: 1 foreground, 0 background, -1 padding (ignored, coordinates unchecked).
        boxes: optional (B, 4) float, (y0, x0, y1, x1) in slice pixels, y0 <= y1 and x0 <= x1.
        mask_logits: optional (B, h, w) float prior logits.
        logits_shape: the (h, w) of the mask logits this backend returns and accepts.
    """
    H, W = image_shape
    pts = np.asarray(points, dtype=np.float64)
    labels = np.asarray(point_labels)
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise InputError(f"points must have shape (B, P, 2) as (y, x), got {pts.shape}")
    B, P = pts.shape[:2]
    if labels.shape != (B, P):
        raise InputError(f"point_labels must have shape {(B, P)} to match points, got {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) and not np.all(labels == np.round(labels))):
        raise InputError("point_labels must be integers (1 foreground, 0 background, -1 padding)")
    labels = labels.astype(np.int64)
    if labels.size and not np.isin(labels, (-1, 0, 1)).all():
        raise InputError(f"point_labels must be 1, 0 or -1 (padding), got {sorted(set(labels.ravel().tolist()))}")
    real = labels >= 0
    if not np.all(np.isfinite(pts[real])):
        raise InputError("points contain NaN or infinite coordinates")
    _check_inside(pts[real], (H, W), "point")
    bxs = None
    if boxes is not None:
        bxs = np.asarray(boxes, dtype=np.float64)
        if bxs.shape != (B, 4):
            raise InputError(f"boxes must have shape ({B}, 4) as (y0, x0, y1, x1), got {bxs.shape}")
        if not np.all(np.isfinite(bxs)):
            raise InputError("boxes contain NaN or infinite coordinates")
        if np.any(bxs[:, 2] < bxs[:, 0]) or np.any(bxs[:, 3] < bxs[:, 1]):
            raise InputError("boxes must satisfy y0 <= y1 and x0 <= x1")
        _check_inside(bxs.reshape(-1, 2), (H, W), "box corner", edges=True)
    if bxs is None and B > 0 and (P == 0 or np.any(~real.any(axis=1))):
        raise InputError("every prompt needs at least one point with label 0 or 1, or a box")
    prior = None
    if mask_logits is not None:
        prior = np.asarray(mask_logits, dtype=np.float32)
        expected = (B, *(int(n) for n in logits_shape))
        if prior.shape != expected:
            raise InputError(f"mask_logits must have shape {expected} (the logits this model returns), "
                             f"got {prior.shape}")
        if not np.all(np.isfinite(prior)):
            raise InputError("mask_logits contain NaN or infinite values")
    return CheckedPrompts(pts, labels, bxs, prior)


def _check_inside(coords_yx: np.ndarray, shape: tuple[int, int], what: str, edges: bool = False) -> None:
    """Raise if any of the (N, 2) (y, x) lies outside the slice: points by `cryoseg.geometry`'s rule (pixel i covers
    [i - 0.5, i + 0.5)); with `edges`, box corners, which may also lie on the slice's far edges."""
    if coords_yx.size == 0:
        return
    if edges:
        bad = np.any((coords_yx < -0.5) | (coords_yx > np.asarray(shape) - 0.5), axis=1)
    else:
        bad = outside_volume(coords_yx, shape)
    if np.any(bad):
        y, x = coords_yx[int(np.argmax(bad))]
        raise InputError(f"{what} (y={y:g}, x={x:g}) lies outside the slice of shape {tuple(shape)}")


class PromptableSegmenter(ABC):
    """A 2D segmenter: `embed` once per slice, then `predict` cheaply for any number of prompts.

    Attributes:
        name: the model's name.
        polarity: how density must appear in the slices it is given, "dark" or "bright", for a model trained on
            one polarity only; None (the default) for a model that takes either. Cross-plane self-prompting
            negates the slices for it when a tomogram's density appears the other way (`SelfPromptConfig.polarity`).
    """

    name: str = "segmenter"
    polarity: str | None = None

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
        """Decode B prompts on one embedded slice in one batched call; prompts follow `check_prompts`.

        Args:
            embedding: from `embed`.
            points: (B, P, 2) float, (y, x) in slice pixels; P may be 0 when `boxes` are given.
            point_labels: (B, P) int, 1 = foreground, 0 = background (negative point), -1 = padding.
            boxes: optional (B, 4) float, (y0, x0, y1, x1) in slice pixels.
            mask_logits: optional (B, h, w) float32 prior logits, one of `MaskPrediction.logits[:, m]` of this
                backend (its own (h, w)).
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
