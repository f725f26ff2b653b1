"""From a tile's spectral maps to one structure map, and the smoothing of a stack of structure maps along z.

Every map here is (h, w) float in [0, 1] with STRUCTURE HIGH: after `orient_map` the bright side (above Otsu's
threshold) is the smaller area, which in a tomogram is the structures (membranes, particles) and not the
background. The selection follows the reference method: the base map is the most "diverse" map among those whose
foreground has few connected regions (a map of noise has many), and maps similar to it (SSIM) that keep the
region count low and the diversity up are merged into it, most similar (PSNR) first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..errors import InputError

logger = logging.getLogger(__name__)

# SSIM's window (skimage's default, 7 x 7) must fit in a map.
MIN_SIDE = 7


@dataclass(frozen=True)
class AggregateConfig:
    """Settings of the map aggregation; every default lives here (the reference method's values).

    Attributes:
        keep: only the first `keep` maps (most significant first) take part; later ones are mostly noise.
        max_contours_base: a base map's foreground has at most this many connected regions.
        max_contours_merged: a merge is refused if the merged foreground has more regions than this.
        min_ssim: only maps with SSIM to the current base above this are merge candidates.
        max_merges: most maps merged into the base.
        patch, stride: patch side and step of the diversity score, in map pixels.
        min_participation: maps whose participation ratio ((Σm²)² / (N Σm⁴): 1 for a map spread evenly, 1/N for
            one lit cell) is below this take no part. Weakly linked cells give eigenvectors localised on a few
            cells; oriented, such a map is a dark tile with one bright dot, and its single region makes it look
            like the best base (not in the reference, whose diffusion attention rarely has such cells).
    """

    keep: int = 10
    max_contours_base: int = 10
    max_contours_merged: int = 15
    min_ssim: float = 0.35
    max_merges: int = 10
    patch: int = 4
    stride: int = 2
    min_participation: float = 0.02

    def __post_init__(self) -> None:
        if self.keep < 1 or self.max_merges < 0:
            raise InputError(f"keep must be >= 1 and max_merges >= 0, got {self.keep} and {self.max_merges}")
        if self.max_contours_base < 1 or self.max_contours_merged < 1:
            raise InputError("max_contours_base and max_contours_merged must be >= 1")
        if not -1.0 <= self.min_ssim <= 1.0:
            raise InputError(f"min_ssim must be in [-1, 1] (an SSIM), got {self.min_ssim}")
        if not 0 <= self.min_participation <= 1:
            raise InputError(f"min_participation must be in [0, 1], got {self.min_participation}")
        if self.patch < 2 or self.stride < 1:
            raise InputError(f"patch must be >= 2 and stride >= 1, got {self.patch} and {self.stride}")


@dataclass(frozen=True, eq=False)
class Aggregated:
    """One tile's structure map.

    Attributes:
        map: (h, w) float32 in [0, 1], structure high.
        used: indices (into the maps given) of the maps merged into it, the base first.
    """

    map: np.ndarray
    used: tuple[int, ...]


def orient_map(m: np.ndarray) -> np.ndarray:
    """A map min-max normalised to [0, 1] and flipped where needed so that structure is high.

    Args:
        m: (h, w) real, finite.

    Returns:
        (h, w) float32 in [0, 1] whose foreground (above Otsu's threshold) is at most half the pixels: the
        minority side of a map is its structure. A constant map becomes all zeros.
    """
    out = _normalised(_check_map(m))
    if np.count_nonzero(out > threshold_otsu(out)) > out.size / 2:
        out = 1.0 - out
    return out.astype(np.float32)


def count_regions(m: np.ndarray) -> int:
    """Number of connected regions (8-connected) of a map's bright side.

    Args:
        m: (h, w) real, finite; min-max normalised here, so any range works.

    Returns:
        Connected components of the pixels above Otsu's threshold (0 for a constant map). The reference counts
        OpenCV's outer contours of the same binary image, which differs only for regions nested in holes.
    """
    n = _normalised(_check_map(m))
    return int(label(n > threshold_otsu(n), connectivity=2, return_num=True)[1])


def diversity_score(m: np.ndarray, patch: int = AggregateConfig.patch, stride: int = AggregateConfig.stride) -> float:
    """How unevenly contrast is spread over a map: the standard deviation, over patches, of each patch's
    standard deviation. Flat maps and uniform noise score low; a map with distinct structures on a flat
    background scores high.

    Args:
        m: (h, w) real, finite, h and w >= `patch`.
        patch, stride: patch side and step in pixels (patches start at 0, stride, 2 * stride, ...).

    Returns:
        The score, in the map's units (compare maps of the same range).
    """
    m = _check_map(m, min_side=patch)
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    windows = sliding_window_view(m, (patch, patch))[::stride, ::stride]
    return float(windows.std(axis=(-2, -1)).std())


def participation(m: np.ndarray) -> float:
    """Participation ratio of a map (any shape, real): (Σm²)² / (N Σm⁴), 1 when every cell carries the same
    weight, 1/N when one cell carries it all; 0 for an all-zero map."""
    sq = np.square(np.asarray(m, dtype=np.float64)).ravel()
    fourth = float(np.sum(sq * sq))
    return float(np.sum(sq)) ** 2 / (sq.size * fourth) if fourth > 0 else 0.0


def aggregate_maps(maps: np.ndarray, config: AggregateConfig | None = None) -> Aggregated:
    """One structure map from a tile's spectral maps: a base map chosen and similar maps merged into it.

    Each of the first `config.keep` maps is oriented (`orient_map`). The base is the map with the highest
    `diversity_score` among those with at most `max_contours_base` regions (`count_regions`); if none has so
    few, the most diverse map. Then, up to `max_merges` times: among the remaining maps with SSIM to the base
    above `min_ssim` whose sum with the base (min-max normalised) has at most `max_contours_merged` regions and
    no lower diversity than the base, the one with the highest PSNR to the base is merged (the sum becomes the
    base); the loop stops when no map qualifies.

    Args:
        maps: (K, h, w) real, finite; K >= 1, h and w >= 7 (SSIM's window) and >= `config.patch`.
        config: settings (default `AggregateConfig()`).

    Returns:
        `Aggregated`: the (h, w) float32 map in [0, 1], structure high, and the indices of the maps in it.
    """
    config = config or AggregateConfig()
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] < 1:
        raise InputError(f"maps must be (K, h, w) with K >= 1, got shape {maps.shape}")
    spread = [participation(m) for m in maps[: config.keep]]
    kept = [i for i, p in enumerate(spread) if p >= config.min_participation]
    if not kept:  # every map localised: keep the least localised rather than none
        kept = [int(np.argmax(spread))]
    oriented = [orient_map(maps[i]).astype(np.float64) for i in kept]
    _check_map(oriented[0], min_side=max(MIN_SIDE, config.patch))
    regions = [count_regions(m) for m in oriented]
    diversity = [diversity_score(m, config.patch, config.stride) for m in oriented]

    eligible = [i for i, r in enumerate(regions) if r <= config.max_contours_base]
    if eligible:
        first = max(eligible, key=lambda i: diversity[i])
    else:
        first = int(np.argmax(diversity))
        logger.debug("aggregate_maps: no map has <= %d regions (fewest %d); base is the most diverse map %d",
                     config.max_contours_base, min(regions), first)
    base, base_diversity, used = oriented[first], diversity[first], [first]
    remaining = [i for i in range(len(oriented)) if i != first]

    for _ in range(config.max_merges):
        best = None  # (psnr, index, merged, diversity)
        for i in remaining:
            if _ssim(base, oriented[i]) <= config.min_ssim:
                continue
            merged = _normalised(base + oriented[i])
            if count_regions(merged) > config.max_contours_merged:
                continue
            merged_diversity = diversity_score(merged, config.patch, config.stride)
            if merged_diversity < base_diversity:
                continue
            with np.errstate(divide="ignore"):  # identical maps: PSNR is +inf, which is the right ranking
                psnr = peak_signal_noise_ratio(base, oriented[i], data_range=1.0)
            if best is None or psnr > best[0]:
                best = (psnr, i, merged, merged_diversity)
        if best is None:
            break
        _, i, base, base_diversity = best
        used.append(i)
        remaining.remove(i)
    used = [kept[i] for i in used]
    logger.debug("aggregate_maps: merged maps %s", used)
    return Aggregated(map=base.astype(np.float32), used=tuple(used))


def suppress_background(m: np.ndarray) -> np.ndarray:
    """A structure map with its background set to 0: values at or below the map's Otsu level become 0, those
    above are rescaled to (0, 1].

    Stable Diffusion's attention maps in the reference have near-zero backgrounds, so a local threshold finds only
    structure; spectral maps of weight-free features on a noisy tile have a textured background, where a local
    threshold marks about half of it (measured on simulated tomograms: 18-22 % of the pixels foreground against
    5-10 % true structure). Setting it to 0 per tile restores what the threshold expects (structure IoU of the
    thresholded maps 0.10-0.24 -> 0.15-0.37 on three slabs, recall nearly unchanged).

    Args:
        m: (h, w) float map in [0, 1], structure high.

    Returns:
        (h, w) float32 in [0, 1]; all zeros for a flat map.
    """
    m = _check_map(m)
    if np.ptp(m) == 0:
        return np.zeros(m.shape, np.float32)
    level = threshold_otsu(m)
    return np.clip((m - level) / (m.max() - level), 0.0, 1.0).astype(np.float32)


def smooth_along_z(stack: np.ndarray, agree: float = 0.9, disagree: float = 0.8, blend: bool = True) -> np.ndarray:
    """Structure maps of consecutive slices made consistent along z.

    For each interior slice, with SSIM computed on the input slices: if its two neighbours agree with each other
    (SSIM > `agree`) but it disagrees with both (SSIM < `disagree` to each), it is an outlier and is replaced by
    the mean of its neighbours; otherwise, with `blend`, it becomes (cur + prev / 2 + next / 2) / 2 as in the
    reference. The first and last slices are unchanged. Both are weighted means with weights summing to 1, so
    values stay in [0, 1] and no renormalisation is done (the reference stretches each slice to its full range;
    that would change a consistent stack and break the comparability of slices).

    Args:
        stack: (Z, H, W) float in [0, 1], structure high; H and W >= 7 (SSIM's window).
        agree: SSIM above which the two neighbours agree.
        disagree: SSIM below which a slice disagrees with a neighbour.
        blend: blend non-outlier interior slices with their neighbours.

    Returns:
        (Z, H, W) float32 in [0, 1]; a stack with fewer than 3 slices is returned unchanged (as float32).
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError(f"stack must be (Z, H, W), got shape {stack.shape}")
    if stack.dtype.kind not in "biuf" or not np.isfinite(stack).all():
        raise InputError("stack must be real and finite")
    if stack.size and (stack.min() < 0 or stack.max() > 1):
        raise InputError(f"stack must be in [0, 1], got [{stack.min():.3g}, {stack.max():.3g}]")
    src = stack.astype(np.float32)
    out = src.copy()
    if len(src) < 3:
        return out
    _check_map(src[0], min_side=MIN_SIDE)
    # SSIM of each pair of consecutive slices, and of each slice's two neighbours.
    step = [_ssim(src[z], src[z + 1]) for z in range(len(src) - 1)]
    replaced = 0
    for z in range(1, len(src) - 1):
        prev, cur, nxt = src[z - 1], src[z], src[z + 1]
        if _ssim(prev, nxt) > agree and step[z - 1] < disagree and step[z] < disagree:
            out[z] = 0.5 * (prev + nxt)
            replaced += 1
        elif blend:
            out[z] = 0.5 * cur + 0.25 * (prev + nxt)
    logger.debug("smooth_along_z: %d of %d interior slices replaced by their neighbours", replaced, len(src) - 2)
    return np.clip(out, 0.0, 1.0)


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps in [0, 1] (skimage's default 7 x 7 window)."""
    return float(structural_similarity(a, b, data_range=1.0))


def _normalised(m: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as float64; a constant map becomes zeros."""
    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _check_map(m: np.ndarray, min_side: int = 1) -> np.ndarray:
    """`m` as an array after checking it is a finite real (h, w) map with both sides >= `min_side`."""
    m = np.asarray(m)
    if m.ndim != 2:
        raise InputError(f"a map must be (h, w), got shape {m.shape}")
    if m.dtype.kind not in "biuf" or not np.isfinite(m).all():
        raise InputError("a map must be real and finite")
    if min(m.shape) < min_side:
        raise InputError(f"a map must be at least {min_side} x {min_side}, got {m.shape}")
    return m
