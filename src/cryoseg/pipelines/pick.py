"""One-prompt picking of a whole tomogram (the CryoSAM method).

Stages: (1) segment the prompted instances in 3D (Cross-Plane Self-Prompting); (2) per-slice features
of the z, y and x views; (3) hierarchical feature matching with the masked mean feature of the prompted
instances as query, giving top-K proposals; (4) segment every proposal in 3D, in batches decoded
together, skipping proposals inside an instance already found and rejecting instances whose volume is
far from the prompted ones; (5) instance labels, semantic mask and centroid picks with scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import to_voxel
from ..io.particles import Particles
from ..io.report import StageTimer
from ..io.volume import Volume
from ..matching import MatchResult, build_volume_features, make_query, match
from ..models.base import FeatureExtractor, PromptableSegmenter
from ..progress import track
from ..segment3d import CrossPlaneSegmenter, InstanceInfo, as_points
from ..segment3d.engine import EmbedderFactory
from .config import PickConfig
from .result import RunResult

logger = logging.getLogger(__name__)


@dataclass
class PickResult(RunResult):
    """Every instance of the prompted kind in one tomogram (see `RunResult` for the shared fields).

    `instances` has consecutive ids, prompted instances first, then by decreasing similarity; `particles` carry
    the matching similarity as their score (1.0 for the prompted instances), class 1 named `config.class_name`.

    Attributes:
        similarity: (N,) matching similarity of each pick (1.0 for prompted ones).
        is_prompt: (N,) True for the instances grown from the user's prompts.
        matches: the raw matching result (proposal points and scores, evaluations, per-level stats).
    """

    similarity: np.ndarray
    is_prompt: np.ndarray
    matches: MatchResult

    def report(self, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        m = self.matches
        return {**super().report(parameters), "matching": {"mode": m.mode, "n_evaluations": m.n_evaluations,
                                                           "nms_radius": m.nms_radius, "levels": m.levels}}

    def particle_columns(self) -> dict[str, np.ndarray]:
        return {"label": self.particles.instance_ids, "similarity": self.similarity, "iou_score": self.iou_scores,
                "is_prompt": self.is_prompt.astype(int)}


@dataclass
class RankedInstances:
    """The kept instances relabelled 1..N, prompted first, then by decreasing similarity.

    Attributes:
        instances: int32 label volume (Z, Y, X) with the new ids.
        particles: centroid picks, scores = similarity, `instance_ids` = the new ids.
        similarity, iou_scores: (N,) per pick.
        is_prompt: (N,) True for the prompted instances.
    """

    instances: Volume
    particles: Particles
    similarity: np.ndarray
    iou_scores: np.ndarray
    is_prompt: np.ndarray


def _check_prompted(infos: list[InstanceInfo]) -> None:
    for n, info in enumerate(infos, 1):
        if info.status == "empty":
            z, y, x = info.prompt
            raise InputError(f"prompt {n} at (z, y, x) = ({z:g}, {y:g}, {x:g}) gave an empty mask: nothing there "
                             f"stands out from its surroundings (is it on background?)")
    inside = [n for n, info in enumerate(infos, 1) if info.status == "duplicate"]
    if inside:
        logger.warning("%d prompt(s) (%s) lie inside the instance of an earlier prompt; they add nothing", len(inside),
                    ", ".join(map(str, inside[:5])) + (", ..." if len(inside) > 5 else ""))


def pick_instances(volume: Volume | np.ndarray, segmenter: PromptableSegmenter, extractor: FeatureExtractor,
                   prompts: Any, negatives: Any = None, config: PickConfig | None = None,
                   cache_dir: str | Path | None = None, embedder: EmbedderFactory | None = None) -> PickResult:
    """Find and segment every instance of the prompted kind.

    Args:
        volume: (Z, Y, X) tomogram (`Volume` or array).
        segmenter: 2D promptable segmenter backend.
        extractor: dense feature extractor backend.
        prompts: (N, 3) z, y, x voxels on instances of the kind (N >= 1).
        negatives: optional (M, 3) z, y, x voxels: not part of any instance, and wrong picks for matching.
        config: settings (default `PickConfig()`).
        cache_dir: folder of the embedding and feature caches.
        embedder: factory of the slice-embedding provider (default `cryoseg.embed.SliceEmbedder`).

    Raises:
        InputError: no prompt, a prompt outside the volume, or a prompt whose mask is empty.
    """
    config = config or PickConfig()
    volume = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    prompts = as_points(prompts, volume.shape, "prompt")
    negatives = as_points(negatives, volume.shape, "negative point")
    if not len(prompts):
        raise InputError("at least one prompt point is needed")
    timer = StageTimer()
    engine = CrossPlaneSegmenter(volume, segmenter, config.segment, embedder=embedder, cache_dir=cache_dir)

    logger.info("stage 1/4: segmenting %d prompt(s) in 3D", len(prompts))
    with timer("segment_prompts"):
        prompted = engine.segment(prompts, negatives)
    _check_prompted(prompted)
    kept = [i for i in prompted if i.status == "ok"]
    reference = float(np.mean([i.voxels for i in kept]))

    logger.info("stage 2/4: per-slice features of views %s", ",".join(config.feature_views))
    with timer("features"):
        features = build_volume_features(volume.data, extractor, cache_dir=cache_dir, views=config.feature_views,
                                         slice_step=config.slice_step)

    logger.info("stage 3/4: %s feature matching", config.matching.mode)
    with timer("matching"):
        query = make_query(features, engine.labels)
        matches = match(features, query, config.matching, negatives=negatives if len(negatives) else None)
    logger.info("%d proposal(s) (%d similarity evaluations)", len(matches.points), matches.n_evaluations)

    logger.info("stage 4/4: segmenting proposals in 3D")
    similarity = {i.label: 1.0 for i in kept}
    records = list(prompted)
    skipped = 0
    lo, hi = config.size_ratio
    with timer("segment_proposals"):
        batches = range(0, len(matches.points), config.proposal_batch)
        for start in track(batches, "segmenting proposals", total=len(batches)):
            points = matches.points[start:start + config.proposal_batch]
            scores = matches.scores[start:start + config.proposal_batch]
            voxels = to_voxel(points, volume.shape)
            free = engine.labels[tuple(voxels.T)] == 0
            skipped += int(np.count_nonzero(~free))
            for p in points[~free]:
                records.append(InstanceInfo(0, p, "skipped"))
            if not free.any():
                continue
            infos = engine.segment(points[free], negatives, others_as_negatives=False)
            for info, score in zip(infos, scores[free]):
                records.append(info)
                if info.status != "ok":
                    continue
                if not lo <= info.voxels / reference <= hi:
                    engine.remove(info, "rejected_size")
                else:
                    similarity[info.label] = float(score)

    if len(matches.points) > 1 and skipped == len(matches.points):
        logger.warning("all %d proposals fell inside instances already segmented: a prompt's mask has probably "
                    "leaked into a neighbouring structure (check preview.png; negative points or another "
                    "prompt help)", skipped)
    with timer("finish"):
        ranked = _assemble(engine, records, len(prompted), similarity, volume, config)
    counts = {"prompts": len(prompts), "negatives": len(negatives), "proposals": len(matches.points),
              "skipped_inside": skipped,
              "empty": sum(r.status == "empty" for r in records),
              "duplicate": sum(r.status == "duplicate" for r in records),
              "rejected_size": sum(r.status == "rejected_size" for r in records),
              "instances": len(ranked.particles), "n_embed": engine.segmenter.n_embed,
              "n_predict": engine.segmenter.n_predict, "similarity_evaluations": matches.n_evaluations}
    seconds = dict(timer.seconds)
    seconds.update({f"segment_{k}": v for k, v in engine.timer.seconds.items()})
    logger.info("%d instance(s) of the prompted kind", len(ranked.particles))
    models = {"segmenter": engine.segmenter.name, "features": getattr(extractor, "name", "features")}
    return PickResult(ranked.instances, records, ranked.particles, ranked.iou_scores, counts, seconds, config, models,
                      similarity=ranked.similarity, is_prompt=ranked.is_prompt, matches=matches, volume=volume)


def _assemble(engine: CrossPlaneSegmenter, records: list[InstanceInfo], n_prompted: int,
              similarity: dict[int, float], volume: Volume, config: PickConfig) -> RankedInstances:
    """Relabel the kept instances 1..N (prompted first, then by decreasing similarity) and build the picks.

    `records` starts with the `n_prompted` records of the user's prompts.
    """
    prompted = [r for r in records[:n_prompted] if r.status == "ok"]
    found = sorted((r for r in records[n_prompted:] if r.status == "ok"), key=lambda r: -similarity[r.label])
    picks = prompted + found
    lut = np.zeros(int(engine.labels.max()) + 1, dtype=np.int32)
    for new, r in enumerate(picks, 1):
        lut[r.label] = new
    labels = lut[engine.labels]
    sim = np.array([similarity[r.label] for r in picks], dtype=np.float64)
    is_prompt = np.arange(len(picks)) < len(prompted)
    for r in picks:
        r.label = int(lut[r.label])
    iou = np.array([r.iou_score for r in picks], dtype=np.float64)
    particles = Particles(np.array([r.centroid for r in picks]).reshape(-1, 3),
                          classes=np.ones(len(picks), dtype=np.int64), scores=sim,
                          instance_ids=np.array([r.label for r in picks], dtype=np.int64),
                          class_names={1: config.class_name})
    return RankedInstances(Volume(labels, volume.voxel_size, volume.origin), particles, sim, iou, is_prompt)
