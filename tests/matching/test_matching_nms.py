"""Greedy 3D non-maximum suppression and peak finding."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.matching.nms import local_maxima, nms


def test_nms_keeps_the_best_of_each_cluster_by_decreasing_score():
    points = np.array([[0, 0, 0], [0, 0, 3], [10, 0, 0], [10, 0, 4.5], [30, 30, 30]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.7, 0.1])
    keep = nms(points, scores, radius=4.0)
    assert keep.tolist() == [1, 2, 3, 4]  # 0 is within 4 of the better 1; 3 is 4.5 from 2, outside
    assert nms(points, scores, radius=5.0).tolist() == [1, 2, 4]
    assert nms(points, scores, radius=5.0, top_k=2).tolist() == [1, 2]
    assert nms(points, scores, radius=0.0).tolist() == [1, 2, 3, 0, 4]


def test_nms_result_respects_the_radius_on_random_points():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 50, size=(400, 3))
    scores = rng.uniform(size=400)
    keep = nms(points, scores, radius=6.0)
    d = np.linalg.norm(points[keep][:, None] - points[keep][None], axis=2)
    assert d[np.triu_indices(len(keep), 1)].min() > 6.0
    # Every dropped point lies within the radius of a kept point scoring at least as high.
    dropped = np.setdiff1d(np.arange(400), keep)
    dd = np.linalg.norm(points[dropped][:, None] - points[keep][None], axis=2)
    assert np.all(((dd <= 6.0) & (scores[keep][None] >= scores[dropped][:, None])).any(axis=1))


def test_local_maxima_ignore_unevaluated_cells_and_the_threshold():
    scores = np.full((5, 5, 5), np.nan, np.float32)
    scores[1:4, 1:4, 1:4] = 0.2
    scores[2, 2, 2] = 0.9
    scores[1, 1, 1] = 0.3  # a corner neighbour of the peak: not a maximum itself
    peaks = local_maxima(scores, 0.5)
    assert peaks.tolist() == [[2, 2, 2]]
    assert local_maxima(scores, 0.95).shape == (0, 3)


def test_nms_bad_input():
    with pytest.raises(InputError, match="one score per point"):
        nms(np.zeros((3, 3)), np.zeros(2), 1.0)
    with pytest.raises(InputError, match="radius"):
        nms(np.zeros((3, 3)), np.zeros(3), -1.0)
