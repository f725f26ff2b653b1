"""Matching primitives: pairs within a distance, the optimal point matching, and prefix matching sizes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from cryoseg.eval.assignment import match_points, max_weight_matching, pairs_within, prefix_matching_sizes


def _brute_size(a: np.ndarray, b: np.ndarray, tol: float) -> tuple[int, float]:
    """Size and summed distance of the largest, then cheapest, matching within `tol` (dense Hungarian)."""
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    cost = np.where(d <= tol, d, 1e6)
    r, c = linear_sum_assignment(cost)
    ok = cost[r, c] < 1e6
    return int(ok.sum()), float(cost[r, c][ok].sum())


def test_pairs_within_lists_exactly_the_close_pairs():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 10, (20, 3)), rng.uniform(0, 10, (15, 3))
    rows, cols, dist = pairs_within(a, b, 3.0)
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(zip(*np.nonzero(d <= 3.0)))
    np.testing.assert_allclose(dist, d[rows, cols])
    empty = pairs_within(np.zeros((0, 3)), b, 3.0)
    assert all(x.size == 0 for x in empty)


def test_match_points_is_largest_then_cheapest():
    # Nearest-first would pair a0 with b1 and stop at one pair; the largest matching has two.
    a = np.array([[0, 0, 1.9], [0, 0, 4.5]])
    b = np.array([[0, 0, 0], [0, 0, 2.0]])
    ai, bi, dist = match_points(a, b, 2.6)
    assert ai.tolist() == [0, 1] and bi.tolist() == [0, 1]
    np.testing.assert_allclose(dist, [1.9, 2.5])
    rng = np.random.default_rng(2)
    for _ in range(25):
        a, b = rng.uniform(0, 12, (rng.integers(1, 12), 3)), rng.uniform(0, 12, (rng.integers(1, 12), 3))
        ai, bi, dist = match_points(a, b, 3.5)
        size, total = _brute_size(a, b, 3.5)
        assert ai.size == size and dist.sum() == pytest.approx(total)
        assert np.all(np.diff(ai) > 0) and len(set(bi.tolist())) == bi.size  # one-to-one, sorted by a


def test_prefix_matching_sizes_equal_the_largest_matching_of_every_prefix():
    rng = np.random.default_rng(4)
    for _ in range(15):
        a, b = rng.uniform(0, 10, (rng.integers(1, 14), 3)), rng.uniform(0, 10, (rng.integers(1, 10), 3))
        order = rng.permutation(len(a))
        rows, cols, dist = pairs_within(a, b, 3.0)
        sizes = prefix_matching_sizes(order, rows, cols, dist, len(a), len(b))
        expected = [_brute_size(a[order[:k + 1]], b, 3.0)[0] for k in range(len(a))]
        assert sizes.tolist() == expected


def test_max_weight_matching_keeps_only_allowed_positive_pairs():
    # Row 0 may take column 0 (weight 2) or 1 (weight 5); row 1 only column 1 (weight 4): 2 + 4 beats 5.
    rows, cols = max_weight_matching(np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([2.0, 5.0, 4.0]), 2, 2)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]
    rows, cols = max_weight_matching(np.array([0]), np.array([0]), np.array([0.0]), 1, 1)
    assert rows.size == cols.size == 0  # a pair that adds nothing is not taken
