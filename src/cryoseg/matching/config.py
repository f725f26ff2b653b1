"""Settings of Hierarchical Feature Matching (`MatchingConfig`): every default of the search is defined here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

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
