"""Soft segment maps of a tile from an attention affinity: the leading non-trivial eigenvectors of the normalised
affinity, i.e. the spectral (normalised-cut) relaxation.

The reference method fits these maps by gradient descent on a normalised-cut objective with an orthogonality
penalty and re-orthogonalises the result; the eigenvectors computed here are the exact minimisers of that relaxed
objective, so no optimisation loop (and no learning-rate or step-count knob) is needed.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.linalg
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from ..errors import InputError

logger = logging.getLogger(__name__)

# Nodes whose degree is below this fraction of the mean degree have (numerically) no affinity to anything: their
# entries in every map are set to 0 instead of being divided by a near-zero sqrt(degree).
ISOLATED_DEGREE = 1e-8
# Up to this many nodes a dense solver is cheapest and exact; above it the Lanczos solver (eigsh) wins by far:
# measured for N = 4096 on 2 shared cores, scipy.linalg.eigh(subset_by_index=13 largest) 33 s against 0.34 s for
# eigsh with float32 products (0.9 s with float64 products and the default tolerance).
DENSE_MAX_NODES = 512
# Relative residual at which Lanczos stops: eigenvalues then agree with the dense solver to ~1e-7, far below
# anything visible in a map, at two thirds of the products the default (machine precision) needs.
LANCZOS_TOL = 1e-6


def spectral_maps(affinity: np.ndarray, grid: tuple[int, int], n_maps: int = 12) -> np.ndarray:
    """Soft maps of a tile: the leading eigenvectors of its normalised affinity, skipping the trivial one.

    W = (A + Aᵀ) / 2 symmetrises the affinity (attention rows are probabilities, so A is row-stochastic but not
    symmetric); with degrees D = diag(W 1), the eigenvectors v of D^-1/2 W D^-1/2 with the largest eigenvalues,
    mapped back as D^-1/2 v, are the exact solution of the normalised-cut relaxation (minimise the cut of
    soft assignments y under yᵀ D y = 1 and mutual D-orthogonality) that the reference approximates by gradient
    descent with an orthogonality penalty. The first eigenvector (eigenvalue 1, D^1/2 1: constant after mapping
    back) carries no segmentation and is skipped.

    Args:
        affinity: (N, N) float, non-negative, finite; N = h * w, nodes in row-major (y, x) order of `grid`. Row i
            holds the affinity of node i to every node (an attention probability map: rows sum to 1).
        grid: (h, w) of the tile's token grid.
        n_maps: number of maps, 1 <= n_maps < N.

    Returns:
        (n_maps, h, w) float32, most significant map first (eigenvalue descending). Each map has unit Euclidean
        norm and a deterministic sign: its first entry of at least half the largest magnitude is positive. Nodes
        with no affinity at all (zero row and column) are 0 in every map.
    """
    a = np.asarray(affinity)
    h, w = _check_grid(grid)
    n = h * w
    if a.ndim != 2 or a.shape != (n, n):
        raise InputError(f"affinity must be (N, N) with N = h * w = {n} for grid {(h, w)}, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise InputError(f"affinity must be a real float array, got dtype {a.dtype}")
    if isinstance(n_maps, bool) or not isinstance(n_maps, (int, np.integer)) or not 1 <= n_maps < n:
        raise InputError(f"n_maps must be an integer in [1, N) = [1, {n}), got {n_maps!r}")
    a32 = np.asarray(a, dtype=np.float32)  # attention is float32 or less precise: float32 products lose nothing
    if not np.isfinite(a32).all():
        raise InputError("affinity contains NaN or infinite values")
    if a32.min() < 0:
        raise InputError(f"affinity must be non-negative, its smallest entry is {float(a32.min()):.3g}")

    # Degrees of W = (A + Aᵀ)/2 without forming W: a 4096² matrix copy costs more than the whole eigensolve.
    degree = 0.5 * (a32.sum(axis=1, dtype=np.float64) + a32.sum(axis=0, dtype=np.float64))
    mean_degree = degree.mean()
    connected = degree > ISOLATED_DEGREE * mean_degree if mean_degree > 0 else np.zeros(n, bool)
    if not connected.any():
        raise InputError("affinity is all zeros: no node has an affinity to any other")
    if not connected.all():
        logger.debug("spectral_maps: %d of %d nodes have no affinity; they are 0 in every map", (~connected).sum(), n)
    inv_sqrt = np.zeros(n)
    inv_sqrt[connected] = 1.0 / np.sqrt(degree[connected])

    k = n_maps + 1
    if n <= DENSE_MAX_NODES or k > n // 4:
        values, vectors = _dense(a, inv_sqrt, k)
    else:
        try:
            values, vectors = _lanczos(a32, inv_sqrt, k)
        except ArpackNoConvergence:  # pathological spectra only; the dense solver always answers (slowly)
            logger.warning("spectral_maps: Lanczos did not converge for N = %d; using the dense solver", n)
            values, vectors = _dense(a, inv_sqrt, k)
    order = np.argsort(values)[::-1][1:]  # eigenvalue descending, trivial first one dropped
    maps = vectors[:, order] * inv_sqrt[:, None]  # back from the normalised problem: y = D^-1/2 v
    return _unit_and_signed(maps).T.reshape(n_maps, h, w).astype(np.float32)


def _dense(a: np.ndarray, inv_sqrt: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of D^-1/2 (A + Aᵀ)/2 D^-1/2 by a dense symmetric solver, in float64."""
    n = a.shape[0]
    m = np.asarray(a, dtype=np.float64)
    m = 0.5 * (m + m.T)
    m *= inv_sqrt[:, None]
    m *= inv_sqrt[None, :]
    return scipy.linalg.eigh(m, subset_by_index=[n - k, n - 1])


def _lanczos(a32: np.ndarray, inv_sqrt: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenpairs of D^-1/2 (A + Aᵀ)/2 D^-1/2 by implicitly restarted Lanczos, applying the
    operator as two float32 matrix-vector products (A and Aᵀ) so that no N x N matrix is copied."""
    n = a32.shape[0]
    s32 = inv_sqrt.astype(np.float32)

    def matvec(x: np.ndarray) -> np.ndarray:
        y = s32 * np.asarray(x, dtype=np.float32).ravel()
        return (0.5 * s32 * (a32 @ y + a32.T @ y)).astype(np.float64)

    operator = LinearOperator((n, n), matvec=matvec, rmatvec=matvec, dtype=np.float64)
    # A fixed start vector makes the result reproducible; a random-looking one (not all ones) is not orthogonal
    # to eigenvectors that are antisymmetric over equal halves of the tile.
    start = np.random.default_rng(0).uniform(0.5, 1.5, n)
    return eigsh(operator, k=k, which="LA", v0=start, tol=LANCZOS_TOL)


def _unit_and_signed(maps: np.ndarray) -> np.ndarray:
    """Columns of `maps` (N, K) scaled to unit norm, each with its first entry of at least half the largest
    magnitude positive (the first largest entry alone would flip between near-equal entries on round-off)."""
    out = np.array(maps, dtype=np.float64)
    for j in range(out.shape[1]):
        col = out[:, j]
        norm = np.linalg.norm(col)
        if norm == 0:
            continue
        col /= norm
        mag = np.abs(col)
        if col[np.argmax(mag >= 0.5 * mag.max())] < 0:
            col *= -1
    return out


def _check_grid(grid: tuple[int, int]) -> tuple[int, int]:
    """(h, w) as ints, both positive."""
    try:
        h, w = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise InputError(f"grid must be (h, w), got {grid!r}") from None
    if h < 1 or w < 1 or (h, w) != tuple(grid):
        raise InputError(f"grid must be two positive integers (h, w), got {grid!r}")
    return h, w
