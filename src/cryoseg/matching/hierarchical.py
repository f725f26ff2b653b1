"""Hierarchical Feature Matching: find every region whose features resemble the prompted instances.

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
from ..geometry import outside_volume
from ..io.particles import Particles
from .features import VolumeFeatures
from .nms import local_maxima, nms

logger = logging.getLogger(__name__)

MODES = ("hierarchical", "naive")


@dataclass(frozen=True)
class MatchingConfig:
    """Settings of the search; every default lives here.

    Attributes:
        levels: voxels per cell of each pyramid level, coarse to fine; each must be a multiple of the next.
        tau_sim: similarity threshold: cells of the finest level with (penalised) cosine similarity >= tau_sim
            can be picks; coarser levels keep cells above tau_sim less `coarse_margin` per level.
        min_score: smallest similarity of a returned pick (None: tau_sim).
        top_k: most picks returned.
        nms_radius: suppression radius in voxels (None: the prompted instances' equivalent-sphere radius,
            from the query's masks; else twice the finest cell size).
        mode: "hierarchical" (coarse to fine) or "naive" (the finest level everywhere).
        chunk_cells: most cells evaluated at once (bounds memory: about chunk_cells * C * 4 bytes).
        refine: move each pick to the similarity-weighted centroid of the finest cells within the NMS
            radius that score above min_score (sub-cell precision, and the centre of the similar region
            rather than its single best cell, which for a blob is often near its rim).
        coarse_margin: a coarse level keeps cells scoring at least tau_sim - coarse_margin * (its number of
            levels above the finest). Coarse cells mix an instance with its surroundings, so copies that
            are less like the prompt, or that straddle cells, score lower there than at the finest level;
            the margin keeps them. Measured on simulated tomograms (benchmarks/bench_matching.py): 0.15 kept
            the naive search's recall on all four tested, with 5.3x fewer evaluations on 200x512x512 (3.6-4x
            on crowded 128^3 ones); 0.1 saved more (6.4x) but lost 4 of 15 particles on one; 0 loses more.
        skip_coarse: skip levels (except the finest) whose cells are wider than the prompted instances'
            diameter; such a cell averages an instance away with the background around it, so its
            similarity says little and pruning on it loses instances. Needs the instances' radius.
    """

    levels: tuple[int, ...] = (16, 8, 4)
    tau_sim: float = 0.5
    min_score: float | None = None
    top_k: int = 512
    nms_radius: float | None = None
    mode: str = "hierarchical"
    chunk_cells: int = 1 << 16
    refine: bool = True
    skip_coarse: bool = True
    coarse_margin: float = 0.15

    def __post_init__(self) -> None:
        levels = tuple(int(v) for v in self.levels) if np.iterable(self.levels) else ()
        object.__setattr__(self, "levels", levels)
        if not levels or any(v < 1 for v in levels) or any(a <= b or a % b for a, b in zip(levels, levels[1:])):
            raise InputError(f"levels must be decreasing positive integers, each a multiple of the next; got {levels}")
        if not -1.0 <= self.tau_sim <= 1.0:
            raise InputError(f"tau_sim must lie in [-1, 1], got {self.tau_sim}")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InputError(f"min_score must lie in [-1, 1], got {self.min_score}")
        if self.top_k < 1:
            raise InputError(f"top_k must be at least 1, got {self.top_k}")
        if self.nms_radius is not None and not (np.isfinite(self.nms_radius) and self.nms_radius > 0):
            raise InputError(f"nms_radius must be a positive number of voxels, got {self.nms_radius}")
        if self.mode not in MODES:
            raise InputError(f"matching mode must be one of {MODES}, got {self.mode!r}")
        if not 0.0 <= self.coarse_margin <= 2.0:
            raise InputError(f"coarse_margin must lie in [0, 2], got {self.coarse_margin}")
        if self.chunk_cells < 1:
            raise InputError(f"chunk_cells must be at least 1, got {self.chunk_cells}")


@dataclass
class Query:
    """What to look for.

    Attributes:
        vector: (C,) float32 unit feature vector.
        radius: equivalent-sphere radius in voxels of the instances it came from (None if unknown).
        n_instances: how many instances were averaged.
    """

    vector: np.ndarray
    radius: float | None = None
    n_instances: int = 1


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


def make_query(features: VolumeFeatures, masks: np.ndarray) -> Query:
    """The query of a set of prompted instances: the normalised mean feature over all their voxels.

    Args:
        features: the volume's features.
        masks: (Z, Y, X) bool mask of the instances (connected components count as instances) or int
            instance labels (0 = background, each other value one instance).
    """
    masks = np.asarray(masks)
    if masks.shape != features.shape:
        raise InputError(f"prompt mask shape {masks.shape} does not match the volume shape {features.shape}")
    if masks.dtype == bool:
        _, n = ndimage.label(masks)
    else:
        n = int(len(np.unique(masks[masks != 0])))
    inside = masks != 0
    if n == 0:
        raise InputError("the prompt mask is empty: no prompted instance to build a query from")
    mean = features.masked_mean(inside)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-12:
        raise InputError("the prompted instances' features average to zero; cannot build a query")
    radius = float((3.0 * inside.sum() / n / (4.0 * np.pi)) ** (1.0 / 3.0))
    return Query((mean / norm).astype(np.float32), radius=radius, n_instances=n)


def _as_query(features: VolumeFeatures, query: Query | np.ndarray) -> Query:
    if isinstance(query, Query):
        vector = np.asarray(query.vector, np.float32).reshape(-1)
        radius = query.radius
    else:
        arr = np.asarray(query)
        if arr.shape == features.shape:
            return make_query(features, arr)
        if arr.ndim != 1:
            raise InputError(
                f"query must be a ({features.channels},) feature vector or a {features.shape} mask, got {arr.shape}"
            )
        vector, radius = arr.astype(np.float32), None
    if vector.shape != (features.channels,):
        raise InputError(f"query has {vector.shape[0]} channels, the features have {features.channels}")
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-12:
        raise InputError("query vector is zero or not finite")
    return Query(vector / norm, radius=radius)


def _check_points(points: np.ndarray | None, shape: tuple[int, int, int], what: str) -> np.ndarray:
    if points is None:
        return np.zeros((0, 3))
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 3))
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        raise InputError(f"{what} must be an (N, 3) array of finite z, y, x voxel coordinates, got {arr.shape}")
    outside = outside_volume(arr, shape)
    if np.any(outside):
        raise InputError(f"{what} {arr[np.argmax(outside)].tolist()} lies outside the volume of shape {shape}")
    return arr


def _ball_offsets(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    grid = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1].reshape(3, -1).T
    return grid[(grid**2).sum(axis=1) <= radius**2 + 1e-9].astype(np.float64)


def negative_vectors(features: VolumeFeatures, points: np.ndarray, radius: float) -> np.ndarray:
    """Unit features of negative exemplars: the mean feature over a ball of `radius` voxels around each point.

    Args:
        points: (N, 3) z, y, x in voxels.

    Returns:
        (N, C) float32.
    """
    offsets = _ball_offsets(max(1.0, radius))
    upper = np.asarray(features.shape, np.float64) - 1
    out = np.empty((len(points), features.channels), np.float32)
    for i, p in enumerate(np.asarray(points, np.float64)):
        ball = np.clip(np.round(p) + offsets, 0, upper)
        mean = features.sample(ball).mean(axis=0)
        out[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def cell_centers(index: np.ndarray, level: int, length: int) -> np.ndarray:
    """Voxel coordinate of the centre of cells `index` of `level` voxels along an axis of `length` voxels."""
    start = index * level
    end = np.minimum(start + level, length)
    return (start + end - 1) / 2.0


def _score_cells(features: VolumeFeatures, cells: np.ndarray, level: int, query: np.ndarray,
                 negatives: np.ndarray) -> np.ndarray:
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


def _children(keep: np.ndarray, ratio: int, shape: tuple[int, int, int]) -> np.ndarray:
    """The cells of the next level (`ratio` times finer, grid `shape`) lying inside kept cells."""
    fine = keep
    for axis in range(3):
        fine = np.repeat(fine, ratio, axis=axis)
    return np.ascontiguousarray(fine[: shape[0], : shape[1], : shape[2]])


def _centroid_refine(scores: np.ndarray, points: np.ndarray, level: int, shape: tuple[int, int, int],
                     radius: float, floor: float, max_steps: int = 10) -> np.ndarray:
    """Move each point to the similarity-weighted centroid of the cells within `radius` voxels (mean shift).

    Weights are (score - floor) over cells scoring above `floor`. A masked-mean query resembles an instance's
    typical voxel, and most voxels of a blob lie near its rim, so the single best cell is often off-centre;
    the centroid of the similar region is not.

    Args:
        scores: (nz, ny, nx) finest-level scores, NaN where not evaluated.
        points: (P, 3) z, y, x voxels.
    """
    good = np.argwhere(np.nan_to_num(scores, nan=-np.inf) > floor)
    if len(good) == 0 or len(points) == 0:
        return points
    weights = scores[tuple(good.T)].astype(np.float64) - floor
    centres = np.stack([cell_centers(good[:, a], level, shape[a]) for a in range(3)], axis=1)
    tree = cKDTree(centres)
    out = points.copy()
    # Mean shift: a window centred off the region's centre sees more of the region on one side; repeat.
    for _ in range(max_steps):
        near = tree.query_ball_point(out, radius)
        counts = np.fromiter((len(n) for n in near), np.intp, len(near))
        if not counts.any():
            break
        cells = np.concatenate([np.asarray(n, np.intp) for n in near])
        owner = np.repeat(np.arange(len(out)), counts)
        total = np.bincount(owner, weights[cells], minlength=len(out))
        new = out.copy()
        has = total > 0
        for a in range(3):
            new[has, a] = np.bincount(owner, weights[cells] * centres[cells, a], minlength=len(out))[has] / total[has]
        moved = float(np.abs(new - out).max())
        out = new
        if moved < 0.05:
            break
    return out


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


def _grid_shape(shape: tuple[int, int, int], level: int) -> tuple[int, int, int]:
    return tuple(-(-s // level) for s in shape)


def match(
    features: VolumeFeatures,
    query: Query | np.ndarray,
    config: MatchingConfig | None = None,
    negatives: np.ndarray | None = None,
    exclude_radius: float | None = None,
) -> MatchResult:
    """Find the regions of the volume most similar to the query.

    Args:
        features: the volume's `VolumeFeatures`.
        query: a `Query`, a (C,) feature vector, or a (Z, Y, X) mask / instance-label volume of the
            prompted instances (its masked mean is the query and its instances' size the NMS radius).
        config: search settings (default `MatchingConfig()`).
        negatives: optional (N, 3) z, y, x voxel points on wrong picks; they push the search away.
        exclude_radius: no pick within this many voxels of a negative point (None: the NMS radius).

    Returns:
        `MatchResult` with points (K, 3) z, y, x in voxels and scores (K,), best first.
    """
    config = config or MatchingConfig()
    q = _as_query(features, query)
    negatives = _check_points(negatives, features.shape, "negative point")
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
    levels = _active_levels(config, q.radius)
    thresholds = [config.tau_sim - config.coarse_margin * (len(levels) - 1 - k) for k in range(len(levels))]
    region = np.ones(_grid_shape(features.shape, levels[0]), bool)
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
            region = _children(keep, level // nxt, _grid_shape(features.shape, nxt))
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
        points = _centroid_refine(scores, points, finest, features.shape, radius, min_score)
        # Peaks of one region converge on its centre: suppress again.
        keep = nms(points, peak_scores, radius, config.top_k)
        points, peak_scores = points[keep], peak_scores[keep]
    seconds = time.perf_counter() - start
    return MatchResult(points, peak_scores.astype(np.float32), total, stats, seconds, config.mode, float(radius))
