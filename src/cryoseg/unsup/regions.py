"""Regions of thresholded structure maps: splitting touching objects, telling particles (round, compact, of a
particle's size) from membranes (everything else), and merging per-slice particle centres into 3D centres.

Regions are split by a distance-transform watershed, or by CellPose where it is installed together with its
weights on disk (nothing is ever downloaded).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max
from skimage.measure import label, perimeter_crofton, regionprops
from skimage.segmentation import watershed

from ..errors import InputError, MissingDependencyError

logger = logging.getLogger(__name__)

SPLIT_METHODS = ("auto", "watershed", "cellpose")
# CellPose's own model folder: $CELLPOSE_LOCAL_MODELS_PATH if set, else ~/.cellpose/models (cellpose 2-4).
CELLPOSE_DIR_ENV = "CELLPOSE_LOCAL_MODELS_PATH"
# Weight file names by cellpose major version (4: Cellpose-SAM; 3: cyto3; 2 and older: cyto2 / cyto), best first.
CELLPOSE_WEIGHTS = {4: ("cpsam",), 3: ("cyto3", "cyto2torch_0", "cytotorch_0"), 2: ("cyto2torch_0", "cytotorch_0")}
# CellPose settings of the reference method; diameter None lets CellPose use its model's own scale.
CELLPOSE_FLOW_THRESHOLD = 0.4
CELLPOSE_CELLPROB_THRESHOLD = 0.0


@dataclass(frozen=True)
class RegionRules:
    """What makes a region a particle; lengths in voxels (pixels of the slice).

    Attributes:
        min_diameter, max_diameter: range of a particle's equivalent diameter (of the disc of the same area).
        min_circularity: smallest 4πA/P² of a particle, with P skimage's Crofton perimeter. Measured on
            digitised discs (radius 3-30, 20 random sub-pixel centres and radii each): 0.954-1.08; on ellipses
            (semi-minor axis 4-10, three rotations): 1.5:1 0.87-0.99, 1.75:1 0.86-0.93, 2:1 0.81-0.89. 0.92 accepts
            every disc and rejects 2:1 and most 1.75:1 ellipses. skimage's default `perimeter` is size-biased
            (discs score 1.03-1.16 at radius 5, 0.93-0.96 at radius 15, 0.92-0.94 at radius 30, and a small
            2:1 ellipse up to 0.94), so no single threshold on it separates discs from elongated shapes.
            The circularity is taken of the region's convex hull: regions cut from noisy maps have ragged outlines
            (a blob of the toy tomogram in the tests scores 0.66 on its own outline), and the hull keeps the shape
            while `min_solidity` keeps arcs and C shapes, whose hull is round, out.
        min_solidity: smallest area / convex-hull area of a particle (a disc 1.0, a noisy blob 0.85-0.95, a
            quarter of a vesicle's membrane well under 0.5).
        min_membrane_length: a region that is not a particle is membrane only if its major axis is at least this
            long; shorter ones are threshold noise (neither class). A membrane is a long sheet: its trace in a
            slice is long even where it is cut at an angle.
        min_membrane_distance: a round region is a particle only if the gap between it and membrane (its
            centre's distance to the nearest membrane voxel minus its equivalent radius) is at least this; a
            region touching membrane has a gap of about 1.
    """

    min_diameter: float = 5.0
    max_diameter: float = 30.0
    min_circularity: float = 0.92
    min_solidity: float = 0.8
    min_membrane_length: float = 0.0
    min_membrane_distance: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_diameter < self.max_diameter:
            raise InputError(f"particle diameters must satisfy 0 <= min_diameter < max_diameter, got "
                             f"{self.min_diameter} and {self.max_diameter}")
        if not 0 <= self.min_circularity or not np.isfinite(self.min_circularity):
            raise InputError(f"min_circularity must be >= 0, got {self.min_circularity}")
        if not 0 <= self.min_solidity <= 1:
            raise InputError(f"min_solidity must be in [0, 1], got {self.min_solidity}")
        if not 0 <= self.min_membrane_distance < np.inf:
            raise InputError(f"min_membrane_distance must be >= 0 voxels, got {self.min_membrane_distance}")


@dataclass(frozen=True, eq=False)
class Separated:
    """A slice's regions sorted into particles and membrane.

    Attributes:
        particles: (H, W) bool, the particle regions.
        membrane: (H, W) bool, every other foreground region.
        centres: (N, 2) float64 particle centroids, (y, x) in pixels, in label order.
        dropped: (H, W) bool, neither particle nor membrane: round regions of a particle's size too close to
            membrane (the reference drops them from both), and specks smaller than the smallest particle (threshold
            noise; a membrane's region is long, never that small); a caller may mark them as "ignore" in training.
    """

    particles: np.ndarray
    membrane: np.ndarray
    centres: np.ndarray
    dropped: np.ndarray


def cellpose_weights() -> Path | None:
    """The CellPose weight file on this machine, if any; nothing is downloaded.

    Looks in CellPose's model folder ($CELLPOSE_LOCAL_MODELS_PATH if set, else ~/.cellpose/models) for the
    weights of the installed cellpose version (cpsam for 4, cyto3 for 3, cyto2torch_0 / cytotorch_0 before),
    or for any of them when cellpose is not installed.

    Returns:
        The path of the first weight file found, or None.
    """
    folder = _cellpose_dir()
    major = _cellpose_major()
    if major is None:
        names = tuple(dict.fromkeys(n for group in CELLPOSE_WEIGHTS.values() for n in group))
    else:
        names = CELLPOSE_WEIGHTS[min(max(major, 2), 4)]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def split_regions(binary: np.ndarray, min_distance: int = 3, method: str = "auto", min_depth: float = 2.0
                  ) -> np.ndarray:
    """Split a binary map into regions, separating touching objects.

    "watershed": watershed of the negated distance transform, seeded at its local maxima (`peak_local_max`,
    at least `min_distance` apart) and restricted to the mask; then neighbouring regions whose common border
    is not a neck are merged again: the distance map must dip at least `min_depth` below the lower of their
    two peaks between them. Without this, a thin band (a membrane), whose distance map is a long ridge of
    near-equal maxima, falls apart into short compact pieces that look like particles. "cellpose": CellPose's
    instance masks of the binary image, restricted to the mask. "auto": CellPose if it is installed and its
    weights are on disk (`cellpose_weights`), else the watershed.

    Args:
        binary: (H, W) bool (or 0/1) foreground.
        min_distance: smallest distance between watershed seeds, in pixels, >= 1.
        method: "auto", "watershed" or "cellpose".
        min_depth: smallest dip of the distance map (pixels) that keeps two watershed regions apart. Measured on
            arcs 3-8 px wide with rough edges (40 of them): 1.0 split 55 % of them, 1.5 20 %, 2.0 one. With 2.0,
            two overlapping discs stay two where their centres are at least 1.5 radii apart for radius >= 8,
            1.7 radii for radius 6, 1.8 for radius 4 (smaller overlaps dip less than 2 pixels).

    Returns:
        (H, W) int32 labels: 0 background, regions 1..n, every foreground pixel in a region.

    Raises:
        MissingDependencyError: method "cellpose" without cellpose or its weights.
    """
    mask = _check_binary(binary)
    if method not in SPLIT_METHODS:
        raise InputError(f"method must be one of {SPLIT_METHODS}, got {method!r}")
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, np.integer)) or min_distance < 1:
        raise InputError(f"min_distance must be an integer >= 1, got {min_distance!r}")
    if not 0 <= min_depth < np.inf:
        raise InputError(f"min_depth must be >= 0, got {min_depth}")
    if method != "watershed":
        weights = _cellpose_available()
        if weights is not None:
            labels = np.where(mask, np.asarray(_cellpose_labels(mask, weights), dtype=np.int32), 0)
            # Foreground CellPose left out stays foreground: its connected pieces become regions of their own.
            rest = label(mask & (labels == 0), connectivity=2)
            labels[rest > 0] = rest[rest > 0] + labels.max()
            return _relabel(labels)
        if method == "cellpose":
            raise MissingDependencyError(_cellpose_missing())
        logger.debug("split_regions: cellpose or its weights not found; using the watershed")
    return _watershed(mask, min_distance, min_depth)


def separate_particles(labels: np.ndarray, rules: RegionRules | None = None) -> Separated:
    """Sort a slice's regions into particles and membrane.

    A region is a particle candidate when its equivalent diameter is within [min_diameter, max_diameter], its
    convex hull's circularity (4πA/P², Crofton perimeter) is at least min_circularity and its solidity at least
    min_solidity; every other region is membrane. A
    candidate closer to membrane than `min_membrane_distance` (gap between its disc and the membrane) is dropped:
    it is neither particle nor membrane (reported in `dropped`), as in the reference, where such regions are left
    out of both the membrane mask and the particle list.

    Args:
        labels: (H, W) non-negative integer labels, 0 background (`split_regions`).
        rules: settings (default `RegionRules()`).

    Returns:
        `Separated`: particles, membrane and dropped masks, and the (N, 2) (y, x) centroids of the particles.
    """
    rules = rules or RegionRules()
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels must be (H, W), got shape {labels.shape}")
    if labels.dtype.kind not in "biu" or (labels.size and labels.min() < 0):
        raise InputError(f"labels must be non-negative integers, got dtype {labels.dtype}")
    labels = labels.astype(np.intp, copy=False)  # also indexes the per-label tables below (a bool would mask)
    props = regionprops(labels)
    candidates = [r for r in props if _is_round(r, rules)]
    keep = np.zeros(int(labels.max(initial=0)) + 1, dtype=bool)
    keep[np.array([r.label for r in candidates], dtype=int)] = True
    speck = np.zeros_like(keep)  # smaller than the smallest particle: threshold noise, neither class
    speck[np.array([r.label for r in props if r.equivalent_diameter_area < rules.min_diameter or
                    (not keep[r.label] and r.axis_major_length < rules.min_membrane_length)], dtype=int)] = True
    membrane = (labels > 0) & ~keep[labels] & ~speck[labels]

    centres = np.array([r.centroid for r in candidates], dtype=np.float64).reshape(-1, 2)
    if membrane.any() and len(candidates):
        to_membrane = cKDTree(np.argwhere(membrane)).query(centres)[0]
    else:
        to_membrane = np.full(len(candidates), np.inf)
    gap = to_membrane - np.array([r.equivalent_diameter_area / 2 for r in candidates], dtype=np.float64)
    near = gap < rules.min_membrane_distance
    particle_ids = np.zeros_like(keep)
    particle_ids[np.array([r.label for r, n in zip(candidates, near) if not n], dtype=int)] = True
    dropped_ids = keep & ~particle_ids
    return Separated(particles=particle_ids[labels], membrane=membrane, centres=centres[~near],
                     dropped=(dropped_ids | speck)[labels])


def merge_centres_3d(centres_per_slice: Sequence[np.ndarray], z_indices: Sequence[int], radius: float,
                     min_slices: int = 2) -> np.ndarray:
    """Merge 2D detections of the slices of a stack into 3D centres.

    Detections on neighbouring slices (consecutive in the sorted `z_indices`) within `radius` in-plane are linked;
    the connected groups are objects, each placed at the mean (z, y, x) of its detections. Objects seen on fewer
    than `min_slices` slices are dropped (noise specks show on one slice), except when a single slice is given.
    Finally, of objects closer than `radius` (3D) to each other only the best supported (most slices, then most
    detections) is kept: one object can be linked into two chains where a slice misses it.

    Args:
        centres_per_slice: one (N_i, 2) array of (y, x) detections per slice (N_i may be 0).
        z_indices: the z of each slice, distinct integers, in the same order.
        radius: link and de-duplication distance in voxels, > 0.
        min_slices: fewest slices an object must be seen on, >= 1.

    Returns:
        (M, 3) float64 centres (z, y, x) in voxels, sorted by z, then y, then x.
    """
    z = np.asarray(list(z_indices))
    if len(z) != len(centres_per_slice):
        raise InputError(f"got {len(centres_per_slice)} slices of centres but {len(z)} z indices")
    if z.size and (z.dtype.kind not in "iu" or len(np.unique(z)) != len(z)):
        raise InputError("z_indices must be distinct integers")
    if not 0 < radius < np.inf:
        raise InputError(f"radius must be a positive number of voxels, got {radius}")
    if isinstance(min_slices, bool) or not isinstance(min_slices, (int, np.integer)) or min_slices < 1:
        raise InputError(f"min_slices must be an integer >= 1, got {min_slices!r}")
    per_slice = []
    for c in centres_per_slice:
        c = np.asarray(c, dtype=np.float64)
        if c.size == 0:
            c = c.reshape(0, 2)
        if c.ndim != 2 or c.shape[1] != 2 or not np.isfinite(c).all():
            raise InputError(f"centres of a slice must be a finite (N, 2) array of (y, x), got shape {c.shape}")
        per_slice.append(c)
    if len(per_slice) == 1:
        min_slices = 1

    # Slices in z order; points (z, y, x) of all detections, slice after slice; rank: position of a point's slice.
    stacked = [np.column_stack([np.full(len(per_slice[k]), float(z[k])), per_slice[k]]) for k in np.argsort(z)]
    counts = [len(p) for p in stacked]
    if sum(counts) == 0:
        return np.zeros((0, 3))
    points = np.concatenate(stacked)
    rank = np.repeat(np.arange(len(stacked)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)])

    rows, cols = [], []
    for r in range(len(stacked) - 1):
        a, b = points[starts[r] : starts[r + 1], 1:], points[starts[r + 1] : starts[r + 2], 1:]
        if len(a) and len(b):
            pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius, output_type="ndarray")
            rows.append(pairs["i"] + starts[r])
            cols.append(pairs["j"] + starts[r + 1])
    rows = np.concatenate(rows) if rows else np.zeros(0, int)
    cols = np.concatenate(cols) if cols else np.zeros(0, int)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(points), len(points)))
    n_groups, group = connected_components(graph, directed=False)

    centres = np.stack([points[group == g].mean(axis=0) for g in range(n_groups)])
    n_slices = np.array([len(np.unique(rank[group == g])) for g in range(n_groups)])
    support = np.bincount(group, minlength=n_groups)
    seen = n_slices >= min_slices
    logger.debug("merge_centres_3d: %d objects, %d seen on >= %d slices", n_groups, seen.sum(), min_slices)
    centres, n_slices, support = centres[seen], n_slices[seen], support[seen]

    best_first = np.lexsort((support, n_slices))[::-1]
    tree = cKDTree(centres) if len(centres) else None
    taken = np.zeros(len(centres), dtype=bool)
    kept = []
    for i in best_first:
        if taken[i]:
            continue
        kept.append(i)
        taken[tree.query_ball_point(centres[i], radius)] = True
    out = centres[kept].reshape(-1, 3)
    return out[np.lexsort((out[:, 2], out[:, 1], out[:, 0]))]


def _is_round(region, rules: RegionRules) -> bool:
    """Whether a region has a particle's size and shape."""
    diameter = region.equivalent_diameter_area
    if not rules.min_diameter <= diameter <= rules.max_diameter:
        return False
    if region.solidity < rules.min_solidity:
        return False
    hull = region.image_convex
    perimeter = perimeter_crofton(hull)
    return perimeter > 0 and 4 * np.pi * np.count_nonzero(hull) / perimeter**2 >= rules.min_circularity


def _watershed(mask: np.ndarray, min_distance: int, min_depth: float) -> np.ndarray:
    """Distance-transform watershed with shallow borders merged (see `split_regions`)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=label(mask), exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = _merge_shallow(watershed(-distance, markers, mask=mask), distance, min_depth)
    # A piece too small to hold a peak above its own floor (peak_local_max needs one) gets no seed: it is a
    # region of its own rather than lost foreground.
    rest = label(mask & (labels == 0), connectivity=1)
    labels[rest > 0] = rest[rest > 0] + labels.max()
    return labels


def _merge_shallow(labels: np.ndarray, distance: np.ndarray, min_depth: float) -> np.ndarray:
    """Merge 4-neighbouring regions whose border's highest distance (the pass between them) lies less than
    `min_depth` below the lower of their two peak distances."""
    n = int(labels.max())
    if n < 2:
        return labels.astype(np.int32)
    peak = np.concatenate([[0.0], ndimage.maximum(distance, labels, np.arange(1, n + 1))])
    low, high, height = [], [], []
    for a, b, da, db in ((labels[:, :-1], labels[:, 1:], distance[:, :-1], distance[:, 1:]),
                         (labels[:-1], labels[1:], distance[:-1], distance[1:])):
        border = (a > 0) & (b > 0) & (a != b)
        low.append(np.minimum(a, b)[border])
        high.append(np.maximum(a, b)[border])
        height.append(np.minimum(da, db)[border])  # crossing the border between a and b, one climbs at least this
    low, high, height = np.concatenate(low), np.concatenate(high), np.concatenate(height)
    if len(low) == 0:
        return labels.astype(np.int32)
    key = low.astype(np.int64) * (n + 1) + high
    pairs, where = np.unique(key, return_inverse=True)
    passes = np.full(len(pairs), -np.inf)
    np.maximum.at(passes, where, height)
    a, b = pairs // (n + 1), pairs % (n + 1)
    shallow = passes > np.minimum(peak[a], peak[b]) - min_depth
    graph = coo_matrix((np.ones(shallow.sum()), (a[shallow], b[shallow])), shape=(n + 1, n + 1))
    _, group = connected_components(graph, directed=False)
    return _relabel(np.where(labels > 0, group[labels] + 1, 0))


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Non-negative labels renumbered 1..n, keeping their order; 0 stays 0."""
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if values[0] == 0:
        return inverse.astype(np.int32)
    return (inverse + 1).astype(np.int32)


def _check_binary(binary: np.ndarray) -> np.ndarray:
    """`binary` as a bool (H, W) array, refusing anything but 0/1 values."""
    arr = np.asarray(binary)
    if arr.ndim != 2:
        raise InputError(f"a binary map must be (H, W), got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise InputError("a binary map must be bool or hold only 0 and 1")
    return arr.astype(bool)


def _cellpose_dir() -> Path:
    """CellPose's model folder, as cellpose itself resolves it."""
    env = os.environ.get(CELLPOSE_DIR_ENV)
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def _cellpose_major() -> int | None:
    """Major version of the installed cellpose, or None when it is not installed."""
    if importlib.util.find_spec("cellpose") is None:
        return None
    try:
        return int(importlib.metadata.version("cellpose").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 4  # installed without metadata (a source checkout): assume the current release


def _cellpose_available() -> Path | None:
    """The weights to run CellPose with, or None when cellpose is not installed or has no weights on disk."""
    if importlib.util.find_spec("cellpose") is None:
        return None
    return cellpose_weights()


def _cellpose_missing() -> str:
    """One line saying what CellPose lacks here."""
    installed = importlib.util.find_spec("cellpose") is not None
    what = "its weights are" if installed else "cellpose is not installed and its weights are"
    return (f"method 'cellpose' needs the cellpose package and its weights on disk, but {what} not in "
            f"{_cellpose_dir()} (${CELLPOSE_DIR_ENV} or ~/.cellpose/models); use method 'watershed'")


@functools.lru_cache(maxsize=1)
def _cellpose_model(weights: Path):
    """A CellPose model loaded once per weight file (loading takes seconds; maps come slice by slice)."""
    from cellpose import core, models

    return models.CellposeModel(gpu=core.use_gpu(), pretrained_model=str(weights))


def _cellpose_labels(mask: np.ndarray, weights: Path) -> np.ndarray:
    """CellPose instance labels (H, W) of a binary image."""
    masks = _cellpose_model(weights).eval(mask.astype(np.float32), diameter=None,
                                          flow_threshold=CELLPOSE_FLOW_THRESHOLD,
                                          cellprob_threshold=CELLPOSE_CELLPROB_THRESHOLD)[0]
    return np.asarray(masks)
