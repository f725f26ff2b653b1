"""Cross-plane self-prompting on one view: start planes, then slice-by-slice propagation in lockstep.

All instances are propagated together. In every round, the fronts (instance, direction) that need the
same slice are decoded in one batched `predict` call on that slice's embedding, so the number of calls
grows with the number of distinct slices visited, not with the number of instances.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from ..geometry import AXIS, to_slice
from ..models.base import MaskPrediction, PromptableSegmenter
from .config import SelfPromptConfig


class Embedder(Protocol):
    """Hands out slice embeddings, each computed at most once (`cryoseg.embed.SliceEmbedder`)."""

    def get(self, view: str, index: int) -> Any: ...


@dataclass
class PlaneMask:
    """One accepted 2D mask, cropped to its bounding box: pixels [r0:r0+h, c0:c0+w] of slice `index` of `view`."""

    view: str
    index: int
    r0: int
    c0: int
    mask: np.ndarray  # (h, w) bool


@dataclass
class InstanceTrace:
    """Everything propagation found for one prompt: accepted 2D masks, their predicted IoUs, slices per direction."""

    prompt: np.ndarray  # (3,) z, y, x voxels
    planes: list[PlaneMask] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    slices: dict[str, int] = field(default_factory=dict)


@dataclass
class _Front:
    inst: int
    direction: int  # 0 on the start plane, else +1 / -1 along the view axis
    index: int
    point: np.ndarray  # (2,) row, col in slice pixels
    logits: np.ndarray | None = None  # (h, w) low-resolution prior logits
    prev: PlaneMask | None = None
    steps: int = 0


def _crop(mask: np.ndarray) -> tuple[int, int, np.ndarray]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    # a copy: a view would keep the whole decoded batch of full-slice masks alive for as long as the trace
    return int(rows[0]), int(cols[0]), mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy()


def _iou(mask: np.ndarray, area: int, prev: PlaneMask) -> float:
    h, w = prev.mask.shape
    inter = int(np.count_nonzero(mask[prev.r0:prev.r0 + h, prev.c0:prev.c0 + w] & prev.mask))
    union = area + int(np.count_nonzero(prev.mask)) - inter
    return inter / union if union else 0.0


def mask_depth(mask: np.ndarray) -> np.ndarray:
    """(H, W) distance of each mask pixel to the nearest background pixel; the slice edge counts as background
    (zero padding), so the deepest pixel stays away from it too."""
    return ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]


def next_point(plane: PlaneMask, strategy: str, logits: np.ndarray | None = None) -> np.ndarray:
    """The point that prompts the next slice, (row, col) in slice pixels.

    "distance": the mask's deepest pixel (peak of its distance transform); "centroid": its centroid when
    that lies inside the mask, else the deepest pixel; "confidence": the mask pixel with the highest logit,
    given `logits` (H, W) at the slice's resolution, the deepest of them on a tie (saturated logits are
    flat inside a mask, and the first of equals would be on its rim); without logits, the deepest pixel.
    """
    if strategy == "centroid":
        centre = np.round(np.argwhere(plane.mask).mean(axis=0)).astype(int)
        if plane.mask[tuple(centre)]:
            return centre + (plane.r0, plane.c0)
    depth = mask_depth(plane.mask)
    if strategy == "confidence" and logits is not None:
        h, w = plane.mask.shape
        window = logits[plane.r0:plane.r0 + h, plane.c0:plane.c0 + w]
        best = plane.mask & (window >= window[plane.mask].max())
        depth = np.where(best, depth, -1.0)
    peak = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return np.asarray(peak, dtype=np.float64) + (plane.r0, plane.c0)


class ViewPropagator:
    """Runs the start planes and the ± propagation of one view for a batch of instances.

    Args:
        view: "z", "y" or "x".
        shape: (Z, Y, X) of the volume.
        segmenter: the 2D promptable segmenter used for `predict`.
        embedder: gives the embedding of (view, index).
        config: thresholds and switches.
    """

    def __init__(self, view: str, shape: tuple[int, int, int], segmenter: PromptableSegmenter,
                 embedder: Embedder, config: SelfPromptConfig) -> None:
        self.view = view
        self.depth = shape[AXIS[view]]
        self.segmenter = segmenter
        self.embedder = embedder
        self.config = config
        self._negatives: list[tuple[np.ndarray, np.ndarray]] = []  # per instance: slice index, (row, col)

    def run(self, traces: list[InstanceTrace], negatives: list[np.ndarray]) -> None:
        """Propagate every trace in this view, appending accepted masks to it.

        Args:
            traces: one per instance; `prompt` (3,) z, y, x voxels.
            negatives: per instance, (M_i, 3) z, y, x voxels of points that are not part of it.
        """
        index, inplane = to_slice(np.stack([t.prompt for t in traces]), self.view)
        self._negatives = [to_slice(n, self.view) for n in negatives]
        fronts = [_Front(i, 0, int(round(index[i])), inplane[i]) for i in range(len(traces))]
        while fronts:
            fronts = self._round(fronts, traces)

    def _round(self, fronts: list[_Front], traces: list[InstanceTrace]) -> list[_Front]:
        by_slice: dict[int, list[_Front]] = defaultdict(list)
        for front in fronts:
            by_slice[front.index].append(front)
        following: list[_Front] = []
        limit = self.config.max_batch or len(fronts)
        for index in sorted(by_slice):
            group = by_slice[index]
            embedding = self.embedder.get(self.view, index)
            for start in range(0, len(group), limit):
                chunk = group[start:start + limit]
                prediction = self._predict(embedding, chunk)
                for b, front in enumerate(chunk):
                    following.extend(self._advance(front, prediction, b, traces[front.inst]))
        return following

    def _prompt_points(self, front: _Front) -> tuple[np.ndarray, np.ndarray]:
        idx, pts = self._negatives[front.inst]
        near = np.abs(idx - front.index) <= self.config.negative_reach
        # A negative on the positive point itself would contradict it; drop it.
        near &= np.linalg.norm(pts - front.point, axis=1) >= 1.0
        points = np.concatenate([front.point[None], pts[near]])
        labels = np.concatenate([[1], np.zeros(int(near.sum()), dtype=np.int64)])
        return points, labels

    def _predict(self, embedding: Any, chunk: list[_Front]) -> MaskPrediction:
        prompts = [self._prompt_points(f) for f in chunk]
        width = max(len(p) for p, _ in prompts)
        points = np.empty((len(chunk), width, 2), dtype=np.float64)
        labels = np.empty((len(chunk), width), dtype=np.int64)
        for b, (p, lab) in enumerate(prompts):
            # Pad with copies of the positive point: every backend accepts those, not all accept a pad label.
            points[b] = np.concatenate([p, np.repeat(p[:1], width - len(p), axis=0)])
            labels[b] = np.concatenate([lab, np.ones(width - len(p), dtype=np.int64)])
        start = chunk[0].direction == 0  # a round holds only start fronts or only propagating ones
        logits = None if start else np.stack([f.logits for f in chunk]).astype(np.float32)
        multimask = self.config.multimask_initial if start else self.config.multimask_propagate
        return self.segmenter.predict(embedding, points, labels, mask_logits=logits, multimask=multimask)

    def _choose(self, front: _Front, prediction: MaskPrediction, b: int) -> int:
        masks, scores = prediction.masks[b], prediction.iou_scores[b]
        if len(masks) == 1:
            return 0
        if front.prev is None:  # start plane: the most confident mask that holds the prompt
            r, c = np.clip(np.round(front.point).astype(int), 0, np.asarray(masks.shape[1:]) - 1)
            holding = [m for m in range(len(masks)) if masks[m, r, c]]
            candidates = holding or list(range(len(masks)))
            return max(candidates, key=lambda m: float(scores[m]))
        # propagation: the candidate that continues the previous slice best
        return max(range(len(masks)), key=lambda m: _iou(masks[m], int(masks[m].sum()), front.prev))

    def _advance(self, front: _Front, prediction: MaskPrediction, b: int, trace: InstanceTrace) -> list[_Front]:
        m = self._choose(front, prediction, b)
        mask = np.asarray(prediction.masks[b, m], dtype=bool)
        area = int(np.count_nonzero(mask))
        cfg = self.config
        if area < cfg.min_area or area > cfg.max_area_fraction * mask.size:
            return []  # vanished, or leaked into the background
        if front.prev is not None and _iou(mask, area, front.prev) < cfg.tau_iou:
            return []
        plane = PlaneMask(self.view, front.index, *_crop(mask))
        trace.planes.append(plane)
        trace.scores.append(float(prediction.iou_scores[b, m]))
        if front.direction:
            key = f"{'+' if front.direction > 0 else '-'}{self.view}"
            trace.slices[key] = trace.slices.get(key, 0) + 1
        if front.direction == 0:
            steps, directions = 0, (+1, -1)
        else:
            steps, directions = front.steps + 1, (front.direction,)
        if cfg.max_slices is not None and steps >= cfg.max_slices:
            return []
        logits = np.asarray(prediction.logits[b, m], dtype=np.float32)
        at_slice = self._slice_logits(logits, mask.shape) if cfg.point_strategy == "confidence" else None
        point = next_point(plane, cfg.point_strategy, at_slice)
        return [_Front(front.inst, d, front.index + d, point, logits, plane, steps)
                for d in directions if 0 <= front.index + d < self.depth]

    def _slice_logits(self, logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
        """(h, w) mask logits as (H, W) slice pixels: as they are when already there, else through the backend's
        `geometry` (the transformers SAM family, whose low-resolution logits span the padded model frame)."""
        if logits.shape == tuple(shape):
            return logits
        geometry = getattr(self.segmenter, "geometry", None)
        if not callable(geometry):
            return None  # no way to place them: next_point falls back to the deepest pixel
        import torch

        from ..models.preprocess import logits_to_image

        return logits_to_image(torch.from_numpy(logits[None]), geometry(tuple(shape)))[0].cpu().numpy()
