"""Prompted 3D instance segmentation of a whole volume: the three views, union, clean-up, instance labels.

`CrossPlaneSegmenter` is the engine; `cryoseg.pipelines.segment.segment_instances` runs it once and returns the
user-facing result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import to_voxel
from ..io.report import StageTimer
from ..io.scratch import scratch_array
from ..io.volume import Volume
from ..models.base import PromptableSegmenter
from ..progress import track
from .cleanup import clean_instance, component_at, union_of_planes
from .config import SelfPromptConfig
from .prompts import as_points
from .propagate import Embedder, InstanceTrace, ViewPropagator
from .records import InstanceInfo
from .wrappers import CountingSegmenter, InvertedContrast, matched_to_polarity

logger = logging.getLogger(__name__)

EmbedderFactory = Callable[[PromptableSegmenter, np.ndarray], Embedder]


class _TimedEmbedder:
    """Adds the seconds spent fetching (and computing) embeddings to the "embed" stage."""

    def __init__(self, inner: Embedder, timer: StageTimer) -> None:
        self.inner, self.timer = inner, timer

    def get(self, view: str, index: int) -> Any:
        with self.timer("embed"):
            return self.inner.get(view, index)


class CrossPlaneSegmenter:
    """Grows point prompts into 3D instances of one volume; instances accumulate across calls.

    Embeddings are shared by every call (each slice of each view is embedded at most once), and an
    instance never takes voxels that an earlier one holds.

    Args:
        volume: the tomogram, a `Volume` or a (Z, Y, X) array.
        segmenter: any 2D promptable segmenter backend.
        config: settings (defaults: `SelfPromptConfig()`).
        embedder: a factory `(segmenter, volume (Z, Y, X) array) -> object with .get(view, index)`, called with
            a counting wrapper of `segmenter`; default `cryoseg.embed.SliceEmbedder` (on-disk cache in
            `cache_dir` when given).
        cache_dir: folder of the embedding cache.
    """

    def __init__(self, volume: Volume | np.ndarray, segmenter: PromptableSegmenter,
                 config: SelfPromptConfig | None = None, embedder: EmbedderFactory | None = None,
                 cache_dir: str | Path | None = None) -> None:
        self.volume = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
        self.shape = self.volume.shape
        self.config = config or SelfPromptConfig()
        segmenter = matched_to_polarity(segmenter, self.volume.data, self.config.polarity)
        self.negated = isinstance(segmenter, InvertedContrast)  # shown negated slices for its density polarity
        self.segmenter = segmenter if isinstance(segmenter, CountingSegmenter) else CountingSegmenter(segmenter)
        self.timer = StageTimer()
        if embedder is None:
            from ..embed import SliceEmbedder

            budget = self.config.embedding_memory_gb
            made = SliceEmbedder(self.segmenter, self.volume.data, cache_dir=cache_dir,
                                 max_bytes=None if budget is None else int(budget * 1e9))
        else:
            made = embedder(self.segmenter, self.volume.data)
        self.embedder = _TimedEmbedder(made, self.timer)
        self.labels = scratch_array(self.shape, np.int32)  # a file-backed map for tomograms larger than memory
        self.instances: list[InstanceInfo] = []
        self._next_label = 1

    def model_names(self) -> dict[str, str]:
        """For results and reports: the segmenter's name and, when it was shown negated slices, why."""
        names = {"segmenter": self.segmenter.name}
        if self.negated:
            names["segmenter_slices"] = (f"negated: this tomogram's density appears {self.segmenter.polarity}, the "
                                         "model was trained on the other polarity")
        return names

    def segment(self, points: Any, negatives: Any = None, others_as_negatives: bool | None = None,
                max_slices: int | None = None) -> list[InstanceInfo]:
        """Segment one instance per point, all decoded together, and add them to `labels`.

        Args:
            points: (N, 3) z, y, x voxels, one per instance.
            negatives: (M, 3) z, y, x voxels of points that belong to none of these instances.
            others_as_negatives: override of `config.others_as_negatives` for this call. False makes the
                result the same as segmenting the points one call at a time, in order (a later point inside an
                earlier instance becomes "duplicate"), which is what machine proposals need: two of them on one
                object must not split it.
            max_slices: for this call, propagate at most this many slices per direction (the smaller of it and
                `config.max_slices`; None: the config's).

        Returns:
            One `InstanceInfo` per point, in order (also appended to `instances`).
        """
        points = as_points(points, self.shape, "prompt")
        negatives = as_points(negatives, self.shape, "negative point")
        if not len(points):
            return []
        cfg = self.config
        if max_slices is not None:
            cfg = replace(cfg, max_slices=min(max_slices, cfg.max_slices or max_slices))
        if others_as_negatives is None:
            others_as_negatives = cfg.others_as_negatives
        per_instance = []
        for i in range(len(points)):
            others = np.delete(points, i, axis=0) if others_as_negatives else np.zeros((0, 3))
            per_instance.append(np.concatenate([negatives, others]))
        traces = [InstanceTrace(p) for p in points]
        start = time.perf_counter()
        embed_before = self.timer.seconds.get("embed", 0.0)
        for view in track(cfg.views, f"segmenting {len(points)} instance(s), view by view"):
            ViewPropagator(view, self.shape, self.segmenter, self.embedder, cfg).run(traces, per_instance)
        embed_spent = self.timer.seconds.get("embed", 0.0) - embed_before
        self.timer.seconds["propagate"] = (self.timer.seconds.get("propagate", 0.0)
                                           + time.perf_counter() - start - embed_spent)
        with self.timer("cleanup"):
            infos = [self._finish(t, n) for t, n in zip(traces, per_instance)]
        self.instances.extend(infos)
        logger.debug("segmented %d prompt(s): %d kept", len(infos), sum(i.status == "ok" for i in infos))
        return infos

    def _finish(self, trace: InstanceTrace, negatives: np.ndarray) -> InstanceInfo:
        info = InstanceInfo(0, trace.prompt, "empty", n_planes=len(trace.planes), slices=dict(trace.slices),
                            iou_score=float(np.mean(trace.scores)) if trace.scores else float("nan"))
        voxel = to_voxel(trace.prompt[None], self.shape)[0]
        holder = int(self.labels[tuple(voxel)])
        if holder:
            info.status, info.duplicate_of = "duplicate", holder
            return info
        if not trace.planes:
            return info
        offset, crop = union_of_planes(trace.planes, self.shape)
        point = voxel - offset
        crop = clean_instance(crop, point, to_voxel(negatives, self.shape) - offset, self.config)
        window = tuple(slice(o, o + s) for o, s in zip(offset, crop.shape))
        crop &= self.labels[window] == 0  # earlier instances keep their voxels
        if not crop.any():
            return info
        crop = component_at(crop, point, self.config.connectivity)
        label = self._next_label
        self._next_label += 1
        self.labels[window][crop] = label
        info.label, info.status = label, "ok"
        info.fit_to(np.argwhere(crop), offset)
        return info

    def remove(self, info: InstanceInfo, status: str) -> None:
        """Take an instance out of `labels`, freeing its voxels, and mark it with `status`."""
        if info.status == "ok" and info.bbox is not None:
            window = tuple(slice(info.bbox[a], info.bbox[a + 3]) for a in range(3))
            region = self.labels[window]
            region[region == info.label] = 0
        info.label, info.status = 0, status
