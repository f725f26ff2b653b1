"""Sub-cell refinement of matching picks: mean shift on the finest level's similarity scores."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .cells import cell_centers


def centroid_refine(scores: np.ndarray, points: np.ndarray, level: int, shape: tuple[int, int, int],
                    radius: float, floor: float, max_steps: int = 10) -> np.ndarray:
    """Move each point to the similarity-weighted centroid of the cells within `radius` voxels (mean shift).

    Weights are (score - floor) over cells scoring above `floor`. A masked-mean query resembles an instance's
    typical voxel, and most voxels of a blob lie near its rim, so the single best cell is often off-centre;
    the centroid of the similar region is not.

    Args:
        scores: (nz, ny, nx) finest-level scores, NaN where not evaluated.
        points: (P, 3) z, y, x voxels.
        level: voxels per cell of `scores`; shape: (Z, Y, X) of the volume.
        radius: window radius in voxels; floor: cells at or below this score do not count.
        max_steps: most mean-shift steps (it stops earlier once no point moves 0.05 voxel).

    Returns:
        (P, 3) z, y, x voxels, in the order of `points`.
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
