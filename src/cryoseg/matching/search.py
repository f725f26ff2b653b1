"""The search of Hierarchical Feature Matching (`match`): find every region whose features resemble the query.

Coarse to fine: cosine similarity to the query is evaluated on a grid of `levels[0]` voxels per cell over
the whole volume; cells scoring at least the level's threshold (`tau_sim`, less `coarse_margin` per level
above the finest) are refined on the next, finer grid, and only there (their children, dilated by one
fine cell so an object on a cell boundary is not lost); and so on. On the last grid, local
maxima scoring at least `min_score` are refined to sub-cell positions, thinned by 3D non-maximum
suppression and the best `top_k` are returned. `mode="naive"` evaluates the finest grid everywhere
instead, for comparison. Work is chunked over z so memory stays bounded on large tomograms.

Negative exemplars: features around each negative point form negative queries. A cell that is more like
a negative than like the query is penalised by the margin:
``score = sim_pos - max(0, max_j sim_neg_j - sim_pos)``; it applies on every level, so the search is
pushed away from regions like the negatives (they are pruned early). Picks within `exclude_radius` of a
negative point are also dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..errors import InputError
from ..io.particles import Particles
from .cells import cell_centers, children, grid_shape
from .config import MatchingConfig
from .features import VolumeFeatures
from .nms import local_maxima, nms
from .query import Query, as_query, check_points, negative_vectors
from .refine import centroid_refine

logger = logging.getLogger(__name__)


@dataclass
class LevelStats:
    """What one pyramid level did: its cell size, grid size, cells evaluated and kept, and seconds."""

    level: int
    grid_shape: tuple[int, int, int]
    n_evaluated: int
    n_kept: int
    seconds: float


@dataclass
class MatchResult:
    """Picks of a feature match.

    Attributes:
        points: (K, 3) float64, z, y, x in voxels, by decreasing score.
        scores: (K,) float32 (penalised) cosine similarities.
        n_evaluations: similarity evaluations (cells whose feature was built and compared), all levels.
        levels: per-level statistics, coarse to fine.
        seconds: wall time of the search (not of building the features or the query).
        mode: "hierarchical" or "naive".
        nms_radius: the suppression radius used, in voxels.
    """

    points: np.ndarray
    scores: np.ndarray
    n_evaluations: int
    levels: list[LevelStats] = field(default_factory=list)
    seconds: float = 0.0
    mode: str = "hierarchical"
    nms_radius: float = 0.0

    def to_particles(self, class_id: int | None = None) -> Particles:
        """The picks as `Particles` (scores kept; one class id for all when given)."""
        classes = None if class_id is None else np.full(len(self.points), class_id, np.int64)
        return Particles(self.points.copy(), classes=classes, scores=self.scores.astype(np.float64))


def _score_cells(features: VolumeFeatures, cells: np.ndarray, level: int, query: np.ndarray,
                 negatives: np.ndarray) -> np.ndarray:
    """(N,) float32 (penalised) cosine similarity to `query` (C,) of `cells` (N, 3) z, y, x cell indices of
    `level`, each cell's feature pooled over its extent; `negatives` (M, C) penalise as the module says."""
    centres = np.stack([cell_centers(cells[:, a], level, features.shape[a]) for a in range(3)], axis=1)
    feats = features.sample(centres, spacing=level)
    # Vectors are unit, so dot products are cosine similarities.
    pos = feats @ query
    if len(negatives):
        neg = (feats @ negatives.T).max(axis=1)
        pos = pos - np.maximum(0.0, neg - pos)
    return pos.astype(np.float32)


def _slabs(region: np.ndarray, chunk: int) -> list[tuple[int, int]]:
    """Consecutive z ranges of `region` holding at most about `chunk` True cells each (at least one plane)."""
    counts = region.reshape(region.shape[0], -1).sum(axis=1)
    out, start, total = [], 0, 0
    for z, c in enumerate(counts):
        if total and total + c > chunk:
            out.append((start, z))
            start, total = z, 0
        total += int(c)
    out.append((start, region.shape[0]))
    return [(a, b) for a, b in out if counts[a:b].sum()]


def _evaluate(features: VolumeFeatures, region: np.ndarray, level: int, query: np.ndarray,
              negatives: np.ndarray, chunk: int) -> tuple[np.ndarray, int]:
    """Scores of the cells in `region` (NaN elsewhere), computed slab by slab over z; and how many."""
    scores = np.full(region.shape, np.nan, np.float32)
    n = 0
    for z0, z1 in _slabs(region, chunk):
        cells = np.argwhere(region[z0:z1])
        cells[:, 0] += z0
        # A slab is one plane at least; split a plane that alone exceeds the chunk.
        for start in range(0, len(cells), chunk):
            part = cells[start:start + chunk]
            scores[part[:, 0], part[:, 1], part[:, 2]] = _score_cells(features, part, level, query, negatives)
        n += len(cells)
    return scores, n


def _active_levels(config: MatchingConfig, radius: float | None) -> tuple[int, ...]:
    """The pyramid levels to run: the finest alone in naive mode, else those not wider than an instance."""
    finest = config.levels[-1]
    if config.mode == "naive":
        return (finest,)
    if not config.skip_coarse or radius is None:
        return config.levels
    kept = tuple(v for v in config.levels[:-1] if v <= 2.0 * radius) + (finest,)
    if len(kept) < len(config.levels):
        logger.info("skipping levels %s: wider than the prompted instances (diameter %.1f voxels)",
                    [v for v in config.levels if v not in kept], 2.0 * radius)
    return kept


def match(
    features: VolumeFeatures,
    query: Query | np.ndarray,
    config: MatchingConfig | None = None,
    negatives: np.ndarray | None = None,
    exclude_radius: float | None = None,
    negative_features: np.ndarray | None = None,
) -> MatchResult:
    """Find the regions of the volume most similar to the query.

    Args:
        features: the volume's `VolumeFeatures`.
        query: a `Query`, a (C,) feature vector, or a (Z, Y, X) mask / instance-label volume of the
            prompted instances (its masked mean is the query and its instances' size the NMS radius).
        config: search settings (default `MatchingConfig()`).
        negatives: optional (N, 3) z, y, x voxel points on wrong picks; they push the search away.
        exclude_radius: no pick within this many voxels of a negative point (None: the NMS radius).
        negative_features: optional (M, C) unit features of negatives from elsewhere (a saved query's); they
            push the search away like negative points do.

    Returns:
        `MatchResult` with points (K, 3) z, y, x in voxels and scores (K,), best first.
    """
    config = config or MatchingConfig()
    q = as_query(features, query)
    negatives = check_points(negatives, features.shape, "negative point")
    if exclude_radius is not None and not (np.isfinite(exclude_radius) and exclude_radius >= 0):
        raise InputError(f"exclude_radius must be a non-negative number of voxels, got {exclude_radius}")
    finest = config.levels[-1]
    radius = config.nms_radius or q.radius
    if radius is None:
        radius = 2.0 * finest
        logger.info("no NMS radius given and none from the prompt masks; using %.1f voxels", radius)
    min_score = config.tau_sim if config.min_score is None else config.min_score

    start = time.perf_counter()
    total = 0
    neg_vecs = (negative_vectors(features, negatives, radius) if len(negatives)
                else np.zeros((0, features.channels), np.float32))
    if negative_features is not None and len(negative_features):
        if np.shape(negative_features)[1:] != (features.channels,):
            raise InputError(f"negative features must be (M, {features.channels}), got {np.shape(negative_features)}")
        neg_vecs = np.concatenate([neg_vecs, np.asarray(negative_features, np.float32)])
    levels = _active_levels(config, q.radius)
    thresholds = [config.tau_sim - config.coarse_margin * (len(levels) - 1 - k) for k in range(len(levels))]
    region = np.ones(grid_shape(features.shape, levels[0]), bool)
    stats: list[LevelStats] = []
    for i, level in enumerate(levels):
        t0 = time.perf_counter()
        scores, n = _evaluate(features, region, level, q.vector, neg_vecs, config.chunk_cells)
        total += n
        if i + 1 < len(levels):
            keep = np.nan_to_num(scores, nan=-np.inf) >= thresholds[i]
            n_kept = int(keep.sum())
            nxt = levels[i + 1]
            # Dilate by one cell of the finer level, so an instance across a kept cell's border is kept whole.
            region = children(keep, level // nxt, grid_shape(features.shape, nxt))
            region = ndimage.binary_dilation(region, structure=np.ones((3, 3, 3), bool))
        else:
            n_kept = int(np.sum(np.nan_to_num(scores, nan=-np.inf) >= min_score))
        stats.append(LevelStats(level, tuple(int(s) for s in scores.shape), n, n_kept, time.perf_counter() - t0))
        logger.debug("level %d: %d cells evaluated, %d kept", level, n, n_kept)

    peaks = local_maxima(scores, min_score)
    peak_scores = scores[tuple(peaks.T)] if len(peaks) else np.zeros(0, np.float32)
    # Cell i spans voxels [i * level, (i + 1) * level); its centre is (first + last voxel) / 2.
    points = np.stack([cell_centers(peaks[:, a], finest, features.shape[a]) for a in range(3)], axis=1)
    if len(negatives) and len(points):
        reach = radius if exclude_radius is None else exclude_radius
        dist, _ = cKDTree(negatives).query(points)
        points, peak_scores = points[dist > reach], peak_scores[dist > reach]
    keep = nms(points, peak_scores, radius, config.top_k)
    points, peak_scores = points[keep], peak_scores[keep]
    if config.refine and len(points):
        points = centroid_refine(scores, points, finest, features.shape, radius, min_score)
        # Peaks of one region converge on its centre: suppress again.
        keep = nms(points, peak_scores, radius, config.top_k)
        points, peak_scores = points[keep], peak_scores[keep]
    seconds = time.perf_counter() - start
    return MatchResult(points, peak_scores.astype(np.float32), total, stats, seconds, config.mode, float(radius))
