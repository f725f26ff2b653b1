"""One-prompt picking of a whole tomogram (the CryoSAM method, with verification of its proposals).

Stages: (1) segment the prompted instances in 3D (Cross-Plane Self-Prompting), and cut back a prompted mask that
leaked into a neighbour (`cryoseg.verify.leak`); (2) per-slice features of the z, y and x views; (3) hierarchical
feature matching with the masked mean feature of the prompted instances as query, giving proposals; (4) verify
the proposals, joined by blobs of the prompted size, by rotational correlation with the prompted particles and
with negative exemplars, and cut where the scores split (`cryoseg.verify`); (5) segment every proposal that
passed in 3D, in batches decoded together, skipping proposals inside an instance already found and rejecting
instances whose volume is far from the prompted ones; instance labels, semantic mask and centroid picks scored
by verification.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..geometry import equivalent_radius
from ..io.particles import Particles
from ..io.report import StageTimer, as_json
from ..io.scratch import map_large_allocations, release_free_memory, scratch_array
from ..io.volume import Volume
from ..matching import MatchResult, build_volume_features, match
from ..matching.query import Query
from ..models.base import FeatureExtractor, PromptableSegmenter
from ..progress import step, track
from ..segment3d import CrossPlaneSegmenter, InstanceInfo, as_points
from ..segment3d.engine import EmbedderFactory
from ..verify import (
    Leak,
    Verification,
    as_exemplars,
    blob_candidates,
    exemplar_half,
    lowpass,
    outside,
    repair_leak,
    verify,
)
from .config import PickConfig
from .pick_query import QUERY_FILE, PickQuery, build_query
from .result import RunResult

logger = logging.getLogger(__name__)


@dataclass
class PickResult(RunResult):
    """Every instance of the prompted kind in one tomogram (see `RunResult` for the shared fields).

    `instances` has consecutive ids, prompted instances first, then by decreasing score; `particles` carry the
    verification score (1.0 for the prompted instances), class 1 named `config.class_name`.

    Attributes:
        score: (N,) verification score of each pick: correlation with the prompted particles, lowered by
            likeness to negative exemplars (1.0 for prompted ones).
        correlation: (N,) correlation with the (averaged) prompted particles (1.0 for prompted ones).
        similarity: (N,) feature-matching similarity of the best proposal on each pick (NaN where only a blob was
            proposed; 1.0 for prompted ones).
        is_prompt: (N,) True for the instances grown from the user's prompts.
        matches: the raw matching result (proposal points and scores, evaluations, per-level stats).
        verification: every candidate scored, and the cut.
        leaks: prompted instances that had leaked into a neighbour and were cut back.
        query: what the pick looked for, saved as `query.npz` to apply to other tomograms.
    """

    score: np.ndarray
    correlation: np.ndarray
    similarity: np.ndarray
    is_prompt: np.ndarray
    matches: MatchResult
    verification: Verification | None = None
    leaks: tuple[Leak, ...] = ()
    query: PickQuery | None = None

    def report(self, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        m = self.matches
        return {**super().report(parameters),
                "matching": {"mode": m.mode, "n_evaluations": m.n_evaluations, "nms_radius": m.nms_radius,
                             "levels": m.levels},
                "verification": self.verification.report() if self.verification is not None else None,
                "leaks": [leak.describe() for leak in self.leaks],
                "query": self.query.describe() if self.query is not None else None}

    def extra_files(self) -> dict[str, tuple[str, Any]]:
        if self.query is None:
            return {}
        return {"query": (QUERY_FILE, lambda path, inputs: self.query.save(path, inputs))}

    def particle_columns(self) -> dict[str, np.ndarray]:
        return {"label": self.particles.instance_ids, "score": self.score, "correlation": self.correlation,
                "similarity": self.similarity, "iou_score": self.iou_scores, "is_prompt": self.is_prompt.astype(int)}


@dataclass
class RankedInstances:
    """The kept instances relabelled 1..N, prompted first, then by decreasing score.

    Attributes:
        instances: int32 label volume (Z, Y, X) with the new ids.
        particles: centroid picks, scores = verification score, `instance_ids` = the new ids.
        columns: per pick (N,) arrays "score", "correlation", "similarity", "iou_score", "is_prompt".
    """

    instances: Volume
    particles: Particles
    columns: dict[str, np.ndarray]


def _stage(message: str, *args: Any) -> None:
    """Log the start of a stage and tell a progress listener (a viewer's progress bar, which may cancel there)."""
    text = message % args
    logger.info(text)
    step(text)


def _signature(model: Any) -> dict[str, Any]:
    """What identifies a backend (name, weights, preprocessing), as JSON; a duck-typed one without `signature()`
    is known by its name."""
    if hasattr(model, "signature"):
        return as_json(model.signature())
    return {"name": getattr(model, "name", type(model).__name__)}


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


def _check_prompted_size(infos: list[InstanceInfo], least: int) -> None:
    for n, info in enumerate(infos, 1):
        if info.status == "ok" and info.voxels < least:
            z, y, x = info.prompt
            raise InputError(f"prompt {n} at (z, y, x) = ({z:g}, {y:g}, {x:g}) gave a mask of only {info.voxels} "
                             f"voxel(s) (fewer than {least}): too small to pick others like it; click nearer the "
                             f"particle's centre, or try another segmenter")


def _repair_leaks(engine: CrossPlaneSegmenter, prompted: list[InstanceInfo]) -> list[Leak]:
    """Cut prompted instances that leaked into a neighbour back to the part around their click."""
    leaks = []
    for n, info in enumerate(prompted, 1):
        leak = repair_leak(engine.labels, info, n) if info.status == "ok" else None
        if leak is not None:
            logger.warning("%s. If the picks look wrong, add a negative point on the neighbour or prompt another "
                           "particle.", leak.describe())
            leaks.append(leak)
    return leaks


def pick_instances(volume: Volume | np.ndarray, segmenter: PromptableSegmenter, extractor: FeatureExtractor,
                   prompts: Any = None, negatives: Any = None, config: PickConfig | None = None,
                   cache_dir: str | Path | None = None, embedder: EmbedderFactory | None = None,
                   query: PickQuery | None = None) -> PickResult:
    """Find and segment every instance of the prompted kind.

    Args:
        volume: (Z, Y, X) tomogram (`Volume` or array).
        segmenter: 2D promptable segmenter backend.
        extractor: dense feature extractor backend.
        prompts: (N, 3) z, y, x voxels on instances of the kind (N >= 1), unless a `query` is given.
        negatives: optional (M, 3) z, y, x voxels: not part of any instance, and particles of a wrong kind
            (pushed away in matching, negative exemplars in verification).
        config: settings (default `PickConfig()`, or the query's).
        cache_dir: folder of the embedding and feature caches.
        embedder: factory of the slice-embedding provider (default `cryoseg.embed.SliceEmbedder`).
        query: a saved query (`PickQuery`, from an earlier pick's `query.npz`) to apply instead of prompts.

    Raises:
        InputError: no prompt and no query, both, a prompt outside the volume, a prompt whose mask is empty, or a
            query made with other models, fixed settings or voxel size.
    """
    config = config or (query.config if query is not None else PickConfig())
    volume = volume if isinstance(volume, Volume) else Volume(np.asarray(volume))
    prompts = as_points(prompts, volume.shape, "prompt")
    negatives = as_points(negatives, volume.shape, "negative point")
    models = {"segmenter": _signature(segmenter), "features": _signature(extractor)}
    if query is None and not len(prompts):
        raise InputError("at least one prompt point (or a saved query) is needed")
    if query is not None:
        if len(prompts):
            raise InputError("give prompts or a saved query, not both (the query already holds its prompts)")
        query.check_models(models["segmenter"], models["features"])
        query.check_config(config)
        query.check_voxel_size(volume.voxel_size, str(volume.source or "the tomogram"))
    map_large_allocations()  # freed arrays go back to the system, not into glibc's heap
    timer = StageTimer()
    engine = CrossPlaneSegmenter(volume, segmenter, config.segment, embedder=embedder, cache_dir=cache_dir)

    prompted: list[InstanceInfo] = []
    leaks: list[Leak] = []
    if query is None:
        _stage("stage 1/5: segmenting %d prompt(s) in 3D", len(prompts))
        with timer("segment_prompts"):
            prompted = engine.segment(prompts, negatives)
            _check_prompted(prompted)
            leaks = _repair_leaks(engine, prompted)
            _check_prompted_size(prompted, config.min_prompt_voxels)
        reference = float(np.mean([i.voxels for i in prompted if i.status == "ok"]))
    else:
        _stage("stage 1/5: no prompts to segment; using the saved %s", query.describe())
        reference = query.reference_voxels
    kept = [i for i in prompted if i.status == "ok"]
    radius = equivalent_radius(reference)
    reach = _proposal_reach(kept, radius, config.proposal_reach)

    _stage("stage 2/5: per-slice features of views %s", ",".join(config.feature_views))
    with timer("features"):
        features = build_volume_features(volume.data, extractor, cache_dir=cache_dir, views=config.feature_views,
                                         slice_step=config.slice_step)

    _stage("stage 3/5: %s feature matching", config.matching.mode)
    with timer("matching"):
        smooth = lowpass(volume.data, config.verify.lowpass)
        if query is None:
            query = build_query(features, engine.labels, np.array([i.centroid for i in kept]), negatives, smooth,
                                reference, models, config, volume)
        matches = match(features, Query(query.vector, radius=radius), config.matching,
                        negatives=negatives if len(negatives) else None, negative_features=query.negative_vectors)
        del features  # the largest arrays of the pick; nothing after matching reads them
    logger.info("%d proposal(s) (%d similarity evaluations)", len(matches.points), matches.n_evaluations)
    if kept and len(matches.points) > 1 and not outside(matches.points, engine.labels).any():
        logger.warning("all %d proposals fell inside the prompted instances: a prompt's mask has probably leaked "
                       "into a neighbouring structure (check preview.png; negative points or another prompt help)",
                       len(matches.points))

    _stage("stage 4/5: verifying proposals against the prompted particles")
    with timer("verify"):
        verification, similarity_of = _verify(volume.data, smooth, matches, query, kept, radius, negatives,
                                              engine.labels, config)
    del smooth
    release_free_memory()

    _stage("stage 5/5: segmenting %d verified proposal(s) in 3D", int(verification.passed.sum()))
    candidate_of: dict[int, int] = {}  # instance label -> index of the verified candidate it grew from
    records = list(prompted)
    skipped = 0
    lo, hi = config.size_ratio
    passed = np.flatnonzero(verification.passed)
    with timer("segment_proposals"):
        batches = range(0, len(passed), config.proposal_batch)
        for start in track(batches, "segmenting proposals", total=len(batches)):
            chosen = passed[start:start + config.proposal_batch]
            points = verification.centre[chosen]
            free = outside(points, engine.labels)
            skipped += int(np.count_nonzero(~free))
            for p in points[~free]:
                records.append(InstanceInfo(0, p, "skipped"))
            if not free.any():
                continue
            infos = engine.segment(points[free], negatives, others_as_negatives=False, max_slices=reach)
            release_free_memory()  # the embeddings this batch dropped
            for info, index in zip(infos, chosen[free]):
                records.append(info)
                if info.status != "ok":
                    continue
                if not lo <= info.voxels / reference <= hi:
                    engine.remove(info, "rejected_size")
                else:
                    candidate_of[info.label] = int(index)

    with timer("finish"):
        ranked = _assemble(engine, records, len(prompted), candidate_of, verification, similarity_of, volume,
                           config)
    counts = {"prompts": len(prompts), "query_prompts": len(query.exemplars), "negatives": len(negatives),
              "proposals": len(matches.points), "candidates": len(verification.score), "verified": len(passed),
              "skipped_inside": skipped, "empty": sum(r.status == "empty" for r in records),
              "duplicate": sum(r.status == "duplicate" for r in records),
              "rejected_size": sum(r.status == "rejected_size" for r in records),
              "instances": len(ranked.particles), "n_embed": engine.segmenter.n_embed,
              "n_predict": engine.segmenter.n_predict, "similarity_evaluations": matches.n_evaluations,
              "leaks_repaired": len(leaks)}
    seconds = dict(timer.seconds)
    seconds.update({f"segment_{k}": v for k, v in engine.timer.seconds.items()})
    logger.info("%d instance(s) of the prompted kind", len(ranked.particles))
    names = {**engine.model_names(), "features": getattr(extractor, "name", "features")}
    c = ranked.columns
    return PickResult(ranked.instances, records, ranked.particles, c["iou_score"], counts, seconds, config, names,
                      score=c["score"], correlation=c["correlation"], similarity=c["similarity"],
                      is_prompt=c["is_prompt"], matches=matches, volume=volume, verification=verification,
                      leaks=tuple(leaks), query=query)


def _proposal_reach(prompted: list[InstanceInfo], radius: float, factor: float | None) -> int | None:
    """Most slices a proposal propagates per direction: `factor` times the largest bounding-box side of the
    prompted instances (of the equivalent sphere, 2 x `radius`, when a saved query brings no instances)."""
    if factor is None:
        return None
    sides = [max(b - a for a, b in zip(i.bbox[:3], i.bbox[3:])) for i in prompted if i.bbox is not None]
    return max(1, int(np.ceil(factor * (max(sides) if sides else 2 * radius))))


def _verify(volume: np.ndarray, smooth: np.ndarray, matches: MatchResult, query: PickQuery,
            prompted: list[InstanceInfo], radius: float, negatives: np.ndarray, labels: np.ndarray,
            config: PickConfig) -> tuple[Verification, np.ndarray]:
    """Score the matching proposals (and blobs of the prompted size) against the query's particles.

    `prompted` are this tomogram's prompted instances (none when a saved query is applied): candidates on or near
    them are not returned. Returns the verification and, per candidate it kept, the matching similarity of the best
    proposal on it (NaN where only a blob was proposed).
    """
    cfg = config.verify
    candidates = [matches.points]
    if cfg.blob_proposals:
        candidates.append(blob_candidates(volume, radius, query.polarity, cfg.blob_threshold, cfg.blob_top_k))
    points = np.concatenate(candidates).reshape(-1, 3)
    # This tomogram's prompts as points (cut here into the same cubes the query holds, and kept off the picks).
    positive = np.array([i.centroid for i in prompted]) if prompted else query.exemplars
    against = query.negatives
    if not prompted:  # a saved query: its negatives, and any clicked on this tomogram
        against = against + as_exemplars(smooth, negatives, exemplar_half(radius, cfg))
    verification = verify(smooth, points, positive, radius, against if len(against) else None, cfg, taken=labels)
    return verification, _nearest_similarity(verification.centre, matches, 1.2 * radius)


def _nearest_similarity(points: np.ndarray, matches: MatchResult, radius: float) -> np.ndarray:
    """(N,) the matching similarity of the best proposal within `radius` voxels of each point (NaN: none)."""
    out = np.full(len(points), np.nan)
    if len(matches.points) and len(points):
        from scipy.spatial import cKDTree

        for i, near in enumerate(cKDTree(matches.points).query_ball_point(points, radius)):
            if near:
                out[i] = float(np.max(matches.scores[near]))
    return out


def _assemble(engine: CrossPlaneSegmenter, records: list[InstanceInfo], n_prompted: int,
              candidate_of: dict[int, int], verification: Verification, similarity: np.ndarray, volume: Volume,
              config: PickConfig) -> RankedInstances:
    """Relabel the kept instances 1..N (prompted first, then by decreasing score) and build the picks.

    `records` starts with the `n_prompted` records of the user's prompts; `candidate_of` maps the label of every
    other kept instance to its candidate in `verification` (and in `similarity`, one value per candidate).
    """
    prompted = [r for r in records[:n_prompted] if r.status == "ok"]
    found = sorted((r for r in records[n_prompted:] if r.status == "ok"),
                   key=lambda r: -verification.score[candidate_of[r.label]])
    picks = prompted + found
    lut = np.zeros(int(engine.labels.max()) + 1, dtype=np.int32)
    for new, r in enumerate(picks, 1):
        lut[r.label] = new
    labels = scratch_array(engine.labels.shape, np.int32)
    for z in range(0, len(labels), 16):  # a few planes at a time: no second full-size temporary
        labels[z:z + 16] = lut[engine.labels[z:z + 16]]
    index = np.array([candidate_of[r.label] for r in found], dtype=np.int64)
    ones = np.ones(len(prompted))
    columns = {"score": np.concatenate([ones, verification.score[index]]),
               "correlation": np.concatenate([ones, verification.correlation[index]]),
               "similarity": np.concatenate([ones, similarity[index]]),
               "iou_score": np.array([r.iou_score for r in picks], dtype=np.float64),
               "is_prompt": np.arange(len(picks)) < len(prompted)}
    for r in picks:
        r.label = int(lut[r.label])
    particles = Particles(np.array([r.centroid for r in picks]).reshape(-1, 3),
                          classes=np.ones(len(picks), dtype=np.int64), scores=columns["score"],
                          instance_ids=np.array([r.label for r in picks], dtype=np.int64),
                          class_names={1: config.class_name})
    return RankedInstances(Volume(labels, volume.voxel_size, volume.origin), particles, columns)
