"""Prompted 3D segmentation of the instances under point prompts (Cross-Plane Self-Prompting), as one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..io.particles import Particles
from ..io.volume import Volume
from ..models.base import PromptableSegmenter
from ..segment3d import CrossPlaneSegmenter, SelfPromptConfig
from ..segment3d.engine import EmbedderFactory
from .result import RunResult


@dataclass
class SegmentResult(RunResult):
    """The prompted instances of one tomogram (see `RunResult`); `records` holds one record per prompt, in prompt
    order, and `particles` carry the predicted IoU as their score."""


def segment_instances(volume: Volume | np.ndarray, segmenter: PromptableSegmenter, points: Any,
                      negatives: Any = None, config: SelfPromptConfig | None = None,
                      embedder: EmbedderFactory | None = None,
                      cache_dir: str | Path | None = None) -> SegmentResult:
    """Cross-Plane Self-Prompting: one 3D instance per point prompt.

    Each point is segmented on its z, y and x planes; every plane mask is propagated slice by slice along
    ± its axis (prompted with a point of the previous slice's mask, its deepest by default, and its mask
    logits) until neighbouring masks overlap less than `tau_iou`, the mask vanishes or the volume ends.
    The union of all 2D masks is cleaned (small holes filled, the prompt's component kept). Instances
    that share a slice are decoded in one batched call.

    Args:
        volume: (Z, Y, X) tomogram (`Volume` or array).
        segmenter: 2D promptable segmenter backend.
        points: (N, 3) z, y, x voxels; earlier points win voxels over later ones.
        negatives: optional (M, 3) z, y, x voxels that belong to no instance.
        config: settings; defaults `SelfPromptConfig()`.
        embedder: optional factory of the slice-embedding provider (default `cryoseg.embed.SliceEmbedder`).
        cache_dir: embedding cache folder.

    Returns:
        `SegmentResult`; instances that found nothing have status "empty" (no error here).
    """
    engine = CrossPlaneSegmenter(volume, segmenter, config, embedder=embedder, cache_dir=cache_dir)
    engine.segment(points, negatives)
    return engine_result(engine)


def engine_result(engine: CrossPlaneSegmenter, calls_before: tuple[int, int] = (0, 0),
                  copy: bool = False) -> SegmentResult:
    """The `SegmentResult` of every instance `engine` holds.

    Args:
        engine: the segmenter after its calls.
        calls_before: the engine's (embed, decode) call counts to subtract, so the counts are those of the latest
            calls only.
        copy: copy the labels (an engine that goes on segmenting changes its own in place).
    """
    records = list(engine.instances)
    kept = [r for r in records if r.status == "ok"]
    iou = np.array([r.iou_score for r in kept], dtype=np.float64)
    particles = Particles(np.array([r.centroid for r in kept]).reshape(-1, 3),
                          classes=np.ones(len(kept), dtype=np.int64), scores=iou,
                          instance_ids=np.array([r.label for r in kept], dtype=np.int64),
                          class_names={1: "instance"})
    counts = {"prompts": len(records), "instances": len(kept),
              "empty": sum(r.status == "empty" for r in records),
              "duplicate": sum(r.status == "duplicate" for r in records),
              "n_embed": engine.segmenter.n_embed - calls_before[0],
              "n_predict": engine.segmenter.n_predict - calls_before[1]}
    vol = engine.volume
    labels = np.array(engine.labels) if copy else engine.labels
    return SegmentResult(Volume(labels, vol.voxel_size, vol.origin), records, particles, iou, counts,
                         dict(engine.timer.seconds), engine.config, engine.model_names(), volume=vol)
