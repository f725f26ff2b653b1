"""Spectral maps from an affinity: known answers on block affinities, both solvers, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.linalg import ArpackNoConvergence

from cryoseg.errors import InputError
from cryoseg.unsup import spectral
from cryoseg.unsup.spectral import spectral_maps


def _block_affinity(labels: np.ndarray, inside=1.0, across=0.01, noise=0.0, seed=0) -> np.ndarray:
    """Affinity `inside` within a group, `across` between groups, plus optional non-negative noise."""
    a = np.where(labels[:, None] == labels[None, :], inside, across)
    if noise:
        a = a + noise * np.random.default_rng(seed).random(a.shape)
    return a


def _two_halves(h: int, w: int) -> np.ndarray:
    """Labels of a (h, w) grid: left half 0, right half 1, flattened row-major."""
    return (np.arange(w)[None, :] >= w // 2).repeat(h, axis=0).ravel().astype(int)


def test_two_blocks_first_map_sign_separates_them():
    labels = _two_halves(8, 10)
    maps = spectral_maps(_block_affinity(labels, noise=0.05), (8, 10), n_maps=3)
    assert maps.shape == (3, 8, 10) and maps.dtype == np.float32
    first = maps[0].ravel()
    assert np.all(np.sign(first[labels == 0]) == np.sign(first[0]))
    assert np.all(np.sign(first[labels == 1]) == -np.sign(first[0]))
    # Deterministic sign: the first large entry (node 0 here) is positive.
    assert first[0] > 0
    assert np.allclose(np.linalg.norm(maps.reshape(3, -1), axis=1), 1.0, atol=1e-5)


def test_three_blocks_first_two_maps_span_the_block_indicators():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, size=90)  # interleaved over the grid: the maps do not rely on spatial order
    maps = spectral_maps(_block_affinity(labels), (9, 10), n_maps=2).reshape(2, -1)
    indicators = np.stack([(labels == g).astype(float) for g in range(3)], axis=1)  # (N, 3)
    # Each map is constant on every block: it lies in the span of the indicators ...
    coef, *_ = np.linalg.lstsq(indicators, maps.T, rcond=None)
    assert np.abs(indicators @ coef - maps.T).max() < 1e-5
    # ... and the two maps with the constant span all three indicators.
    assert np.linalg.matrix_rank(np.column_stack([maps.T, np.ones(90)]), tol=1e-6) == 3


def test_row_stochastic_non_symmetric_input_through_the_lanczos_path():
    """24 x 24 = 576 nodes is above the dense limit: the Lanczos solver runs. Rows are attention-like softmax
    probabilities (non-symmetric); the first map must still separate the left and right halves."""
    h, w = 24, 24
    assert h * w > spectral.DENSE_MAX_NODES
    labels = _two_halves(h, w)
    rng = np.random.default_rng(2)
    logits = 4.0 * (labels[:, None] == labels[None, :]) + rng.normal(0, 0.5, (h * w, h * w))
    a = np.exp(logits)
    a /= a.sum(axis=1, keepdims=True)
    assert not np.allclose(a, a.T) and np.allclose(a.sum(axis=1), 1.0)
    maps = spectral_maps(a.astype(np.float32), (h, w), n_maps=4)
    first = maps[0].ravel()
    assert np.all(first[labels == 0] > 0) and np.all(first[labels == 1] < 0)  # node 0 is left: positive side


def test_deterministic():
    rng = np.random.default_rng(3)
    a = rng.random((600, 600)).astype(np.float32)
    a /= a.sum(axis=1, keepdims=True)
    one = spectral_maps(a, (20, 30), n_maps=5)
    two = spectral_maps(a.copy(), (20, 30), n_maps=5)
    assert np.array_equal(one, two)


def test_isolated_nodes_are_zero_and_do_not_break_the_rest():
    labels = _two_halves(6, 8)
    a = _block_affinity(labels)
    a[5, :] = 0  # node 5: no affinity in either direction
    a[:, 5] = 0
    maps = spectral_maps(a, (6, 8), n_maps=2).reshape(2, -1)
    assert np.isfinite(maps).all()
    assert np.all(maps[:, 5] == 0)
    others = np.arange(48) != 5
    first = maps[0][others]
    assert np.all(np.sign(first[labels[others] == 0]) == 1) and np.all(np.sign(first[labels[others] == 1]) == -1)
    # A zero row alone (the node is attended to, but attends to nothing) is not isolated in (A + Aᵀ) / 2.
    b = _block_affinity(labels)
    b[5, :] = 0
    first = spectral_maps(b, (6, 8), n_maps=1)[0].ravel()
    assert np.all(first[labels == 0] > 0) and np.all(first[labels == 1] < 0)


@pytest.mark.parametrize(
    "affinity, grid, n_maps, message",
    [
        (np.ones((12, 12)), (3, 4), 12, "n_maps"),
        (np.ones((12, 12)), (3, 4), 0, "n_maps"),
        (np.ones((12, 12)), (4, 4), 2, "N = h \\* w = 16"),
        (np.ones((12, 10)), (3, 4), 2, "N = h \\* w"),
        (np.full((12, 12), np.nan), (3, 4), 2, "NaN"),
        (-np.ones((12, 12)), (3, 4), 2, "non-negative"),
        (np.zeros((12, 12)), (3, 4), 2, "all zeros"),
        (np.ones((12, 12)), (3, 4.5), 2, "grid"),
    ],
)
def test_bad_input(affinity, grid, n_maps, message):
    with pytest.raises(InputError, match=message):
        spectral_maps(affinity, grid, n_maps)


def test_lanczos_agrees_with_the_dense_solver_it_falls_back_to(monkeypatch):
    labels = _two_halves(24, 24)
    a = _block_affinity(labels, noise=0.2, seed=4).astype(np.float32)
    lanczos = spectral_maps(a, (24, 24), n_maps=2)

    def no_convergence(*args):
        raise ArpackNoConvergence("no convergence", np.zeros(0), np.zeros((576, 0)))

    monkeypatch.setattr(spectral, "_lanczos", no_convergence)
    dense = spectral_maps(a, (24, 24), n_maps=2)  # exact, float64
    assert np.all(dense[0].ravel()[labels == 0] > 0) and np.all(dense[0].ravel()[labels == 1] < 0)
    np.testing.assert_allclose(lanczos[0], dense[0], atol=1e-4)


@pytest.mark.parametrize("side", [10, 24])  # dense and Lanczos solver
def test_maps_solve_the_normalised_cut_relaxation(side):
    """Each map y satisfies W y = λ D y (the generalised eigenproblem of the normalised cut), is D-orthogonal to
    the constant and to the other maps, and the λ are the largest after the trivial 1, in descending order."""
    n = side * side
    rng = np.random.default_rng(5)
    a = rng.random((n, n)) ** 8  # skewed, non-symmetric affinities
    a /= a.sum(axis=1, keepdims=True)
    maps = spectral_maps(a, (side, side), n_maps=3).reshape(3, n).astype(np.float64)
    w = 0.5 * (a + a.T)
    d = w.sum(axis=1)
    lam = np.array([y @ w @ y / (y @ (d * y)) for y in maps])
    for y, value in zip(maps, lam):
        assert np.linalg.norm(w @ y - value * d * y) < 1e-4 * np.linalg.norm(d * y)
    gram = (maps * d) @ np.column_stack([np.ones(n), maps.T])
    assert np.abs(gram[:, 0]).max() < 1e-4 and np.abs(gram[:, 1:] - np.diag(np.diag(gram[:, 1:]))).max() < 1e-4
    assert np.all(np.diff(lam) <= 1e-6) and lam[0] < 1 - 1e-6
    if n <= 100:  # the largest ones: compare with all eigenvalues (small: a dense solve costs nothing)
        top = np.linalg.eigvalsh(w / np.sqrt(d[:, None] * d[None, :]))[::-1]
        np.testing.assert_allclose(lam, top[1:4], atol=1e-6)
