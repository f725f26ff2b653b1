"""One-prompt picking of a whole tomogram (the CryoSAM method).

Stages: (1) segment the prompted instances in 3D (Cross-Plane Self-Prompting); (2) per-slice features
of the z, y and x views; (3) hierarchical feature matching with the masked mean feature of the prompted
instances as query, giving top-K proposals; (4) segment every proposal in 3D, in batches decoded
together, skipping proposals inside an instance already found and rejecting instances whose volume is
far from the prompted ones; (5) instance labels, semantic mask and centroid picks with scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.particles import Particles
from ..io.record import StageTimer
from ..io.volume import Volume
from ..matching import MatchingConfig, MatchResult, build_volume_features, make_query, match
from ..models.base import FeatureExtractor, PromptableSegmenter
from ..progress import track
from ..segment3d import CrossPlaneSegmenter, InstanceInfo, SelfPromptConfig, as_points
from ..segment3d.engine import EmbedderFactory
from ..segment3d.prompts import to_voxel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PickConfig:
    """Settings of the whole-tomogram pick; every default lives here (or in the nested configs).

    Attributes:
        segment: 3D segmentation of prompts and proposals.
        matching: the feature search (tau_sim, top_k, levels, mode, ...).
        size_ratio: keep a proposal's instance only if its voxel count over the mean of the prompted
            instances lies in [low, high].
        proposal_batch: proposals segmented together (decoded in shared batched calls); a proposal is skipped
            when an instance of an earlier batch already holds it, and marked "duplicate" when one of its own
            batch does. Proposals are not negatives of each other (unlike the user's prompts), so the batch
            size changes the cost, not the result: two proposals on one elongated particle must not split it
            (on four simulated 128^3 tomograms, one prompt per class, mutual negatives never raised F1 and
            cut the dumbbell F1 from 0.36 to 0.25 on one by splitting dumbbells).
        feature_views: views whose per-slice features are concatenated for matching.
        slice_step: embed every n-th slice for the features (None: the extractor's stride).
        class_name: object name written to the coordinate files (copick object, STAR class 1).
    """

    segment: SelfPromptConfig = field(default_factory=SelfPromptConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    size_ratio: tuple[float, float] = (0.33, 3.0)
    proposal_batch: int = 64
    feature_views: tuple[str, ...] = ("z", "y", "x")
    slice_step: int | None = None
    class_name: str = "particle"

    def __post_init__(self) -> None:
        lo, hi = self.size_ratio
        if not 0 <= lo <= 1 <= hi:
            raise InputError(f"size_ratio must be (low, high) with 0 <= low <= 1 <= high, got {self.size_ratio}")
        if self.proposal_batch < 1:
            raise InputError(f"proposal_batch must be at least 1, got {self.proposal_batch}")


@dataclass
class PickResult:
    """Every instance of the prompted kind in one tomogram.

    Attributes:
        instances: int32 label volume (Z, Y, X), consecutive ids, prompted instances first; voxel size kept.
        mask: uint8 semantic mask (Z, Y, X), 1 on any instance.
        particles: one pick per instance at its centroid (z, y, x voxels); `scores` = matching similarity
            (1.0 for the prompted instances), `instance_ids` = label ids, class 1 named `class_name`.
        similarity: (N,) matching similarity of each pick (1.0 for prompted ones).
        iou_score: (N,) mean predicted IoU of each pick's 2D masks.
        is_prompt: (N,) True for the instances grown from the user's prompts.
        records: every prompt and proposal with its outcome (status "ok", "empty", "duplicate",
            "rejected_size"; "skipped" for proposals inside an existing instance), labels as in `instances`.
        matches: the raw matching result (proposal points and scores, evaluations, per-level stats).
        counts: prompts, proposals, skipped, empty, rejected, instances, embed and predict calls.
        seconds: wall-clock seconds per stage.
        config: the settings used.
        models: backend names, {"segmenter": ..., "features": ...}.
        volume: the tomogram (for previews; not copied).
    """

    instances: Volume
    mask: Volume
    particles: Particles
    similarity: np.ndarray
    iou_score: np.ndarray
    is_prompt: np.ndarray
    records: list[InstanceInfo]
    matches: MatchResult
    counts: dict[str, int]
    seconds: dict[str, float]
    config: PickConfig
    models: dict[str, str]
    volume: Volume | None = field(default=None, repr=False, compare=False)

    def save(self, outdir: str | Path, volume_format: str = "mrc", inputs: tuple[str | Path, ...] = (),
             parameters: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write instances and mask (MRC or OME-Zarr), picks (STAR 4 and 5, CSV, copick JSON), tables,
        a preview PNG and report.json into `outdir`; returns {name: path}."""
        from ..segment3d.output import write_outputs

        report = {"parameters": {"config": self.config, **(parameters or {})}, "models": self.models,
                  "counts": self.counts, "seconds": self.seconds,
                  "matching": {"mode": self.matches.mode, "n_evaluations": self.matches.n_evaluations,
                               "nms_radius": self.matches.nms_radius, "levels": self.matches.levels}}
        first_prompt = next((r.prompt for r in self.records if r.status == "ok"), None)
        return write_outputs(outdir, labels=self.instances, particles=self.particles, instances=self.records,
                             report=report, tomogram=self.volume, point=first_prompt, volume_format=volume_format,
                             inputs=inputs, extra_columns={"label": self.particles.instance_ids,
                                                           "similarity": self.similarity,
                                                           "iou_score": self.iou_score,
                                                           "is_prompt": self.is_prompt.astype(int)})


def _check_prompted(infos: list[InstanceInfo]) -> None:
    for n, info in enumerate(infos, 1):
        if info.status == "empty":
            z, y, x = info.prompt
            raise InputError(f"prompt {n} at (z, y, x) = ({z:g}, {y:g}, {x:g}) gave an empty mask: nothing there "
                             f"stands out from its surroundings (is it on background?)")
    inside = [n for n, info in enumerate(infos, 1) if info.status == "duplicate"]
    if inside:
        log.warning("%d prompt(s) (%s) lie inside the instance of an earlier prompt; they add nothing", len(inside),
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

    log.info("stage 1/4: segmenting %d prompt(s) in 3D", len(prompts))
    with timer("segment_prompts"):
        prompted = engine.segment(prompts, negatives)
    _check_prompted(prompted)
    kept = [i for i in prompted if i.status == "ok"]
    reference = float(np.mean([i.voxels for i in kept]))

    log.info("stage 2/4: per-slice features of views %s", ",".join(config.feature_views))
    with timer("features"):
        features = build_volume_features(volume.data, extractor, cache_dir=cache_dir, views=config.feature_views,
                                         slice_step=config.slice_step)

    log.info("stage 3/4: %s feature matching", config.matching.mode)
    with timer("matching"):
        query = make_query(features, engine.labels)
        matches = match(features, query, config.matching, negatives=negatives if len(negatives) else None)
    log.info("%d proposal(s) (%d similarity evaluations)", len(matches.points), matches.n_evaluations)

    log.info("stage 4/4: segmenting proposals in 3D")
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
        log.warning("all %d proposals fell inside instances already segmented: a prompt's mask has probably "
                    "leaked into a neighbouring structure (check preview.png; negative points or another "
                    "prompt help)", skipped)
    with timer("finish"):
        result = _assemble(engine, records, len(prompted), similarity, volume, config)
    counts = {"prompts": len(prompts), "negatives": len(negatives), "proposals": len(matches.points),
              "skipped_inside": skipped,
              "empty": sum(r.status == "empty" for r in records),
              "duplicate": sum(r.status == "duplicate" for r in records),
              "rejected_size": sum(r.status == "rejected_size" for r in records),
              "instances": len(result[2]), "embed_calls": engine.segmenter.n_embed,
              "predict_calls": engine.segmenter.n_predict, "similarity_evaluations": matches.n_evaluations}
    seconds = dict(timer.seconds)
    seconds.update({f"segment_{k}": v for k, v in engine.timer.seconds.items()})
    labels, mask, particles, sim, iou, is_prompt = result
    log.info("%d instance(s) of the prompted kind", len(particles))
    return PickResult(labels, mask, particles, sim, iou, is_prompt, records, matches, counts, seconds, config,
                      {"segmenter": engine.segmenter.name, "features": getattr(extractor, "name", "features")},
                      volume)


def _assemble(engine: CrossPlaneSegmenter, records: list[InstanceInfo], n_prompted: int,
              similarity: dict[int, float], volume: Volume, config: PickConfig) -> tuple:
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
    iou = np.array([r.score for r in picks], dtype=np.float64)
    particles = Particles(np.array([r.centroid for r in picks]).reshape(-1, 3),
                          classes=np.ones(len(picks), dtype=np.int64), scores=sim,
                          instance_ids=np.array([r.label for r in picks], dtype=np.int64),
                          class_names={1: config.class_name})
    instances = Volume(labels, volume.voxel_size, volume.origin)
    mask = Volume((labels > 0).astype(np.uint8), volume.voxel_size, volume.origin)
    return instances, mask, particles, sim, iou, is_prompt
