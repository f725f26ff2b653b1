"""Whole-volume scans in bounded memory: z-slabs and statistics over them.

Shared by `volumes` and the format modules (`mrc`, `omezarr`), so neither has to import the other for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# values per slab when a whole volume is scanned (NaN check, statistics, writes): 32 MB as float64
SLAB_ELEMENTS = 1 << 22


def iter_z_slabs(shape: tuple[int, ...], max_elements: int | None = None) -> Iterator[slice]:
    """Slices along z (axis 0) covering `shape`, at most `max_elements` (default SLAB_ELEMENTS) values per slab
    but at least one plane."""
    plane = math.prod(shape[1:]) or 1
    step = max(1, (max_elements or SLAB_ELEMENTS) // plane)
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0]))


@dataclass(frozen=True)
class ChunkStats:
    """Statistics over the finite values of an array; `nonfinite` counts NaN and Inf."""

    min: float
    max: float
    mean: float
    std: float
    count: int
    nonfinite: int


def chunk_stats(data: np.ndarray) -> ChunkStats:
    """Min, max, mean and std of the finite values of `data` (Z, ...), read in z-slabs to bound memory."""
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi, nonfinite = math.inf, -math.inf, 0
    for sl in iter_z_slabs(data.shape):
        slab = np.asarray(data[sl], dtype=np.float64)
        if data.dtype.kind in "fc":
            finite = np.isfinite(slab)
            nonfinite += int(slab.size - np.count_nonzero(finite))
            slab = slab[finite]
        if slab.size == 0:
            continue
        k, k_mean = slab.size, float(slab.mean())
        k_m2 = float(np.square(slab - k_mean).sum())
        # Chan et al. pairwise combination of (count, mean, M2): stable across many slabs
        delta = k_mean - mean
        total = n + k
        mean += delta * k / total
        m2 += k_m2 + delta * delta * n * k / total
        n = total
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
    if n == 0:
        return ChunkStats(math.nan, math.nan, math.nan, math.nan, 0, nonfinite)
    return ChunkStats(lo, hi, mean, math.sqrt(m2 / n), n, nonfinite)
