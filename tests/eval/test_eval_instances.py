"""Instance metrics: a split and a merged instance by hand, the IoU = 0.5 boundary, brute-force checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from cryoseg.errors import InputError
from cryoseg.eval import instance_scores
from cryoseg.io import Volume

# (1, 4, 8). Row 0: T1 (8 voxels) split into P1 (6) + P2 (2). Row 1: T2 (6) + T3 (2) merged into P3 (8).
# Row 2: T4 (4) missed. Row 3: P4 (2) on background.
TRUTH = np.array([[[1, 1, 1, 1, 1, 1, 1, 1],
                   [2, 2, 2, 2, 2, 2, 3, 3],
                   [4, 4, 4, 4, 0, 0, 0, 0],
                   [0, 0, 0, 0, 0, 0, 0, 0]]])
PRED = np.array([[[11, 11, 11, 11, 11, 11, 12, 12],
                  [13, 13, 13, 13, 13, 13, 13, 13],
                  [0, 0, 0, 0, 0, 0, 0, 0],
                  [14, 14, 0, 0, 0, 0, 0, 0]]])


def test_split_and_merged_instances_by_hand():
    s = instance_scores(PRED, TRUTH)
    assert (s.n_pred, s.n_truth) == (4, 4)
    # IoU(P1, T1) = 6/8 and IoU(P3, T2) = 6/8 pass 0.5; P2-T1 and P3-T3 (2/8) do not.
    assert (s.tp, s.fp, s.fn) == (2, 2, 2)
    assert s.precision == 0.5 and s.recall == 0.5 and s.f1 == 0.5
    assert sorted(zip(s.tp_pred_ids.tolist(), s.tp_truth_ids.tolist())) == [(11, 1), (13, 2)]
    np.testing.assert_allclose(s.tp_ious, [0.75, 0.75])
    assert s.n_matched == 2 and s.mean_matched_iou == pytest.approx(0.75)
    assert s.panoptic_quality == pytest.approx(0.75 * 0.5)
    # Foreground: pred 18 voxels, truth 20, shared 16.
    assert s.foreground_iou == pytest.approx(16 / 22) and s.foreground_dice == pytest.approx(32 / 38)
    json.dumps(s.to_dict())
    assert s.to_dict()["tp"] == 2


def test_threshold_is_inclusive_at_one_half():
    truth = np.array([[[5, 5, 5, 5]]])
    pred = np.array([[[7, 7, 0, 0]]])  # IoU exactly 2/4
    assert instance_scores(pred, truth, iou_threshold=0.5).tp == 1
    s = instance_scores(pred, truth, iou_threshold=0.6)
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    assert s.mean_matched_iou == pytest.approx(0.5)  # matched IoU does not depend on the threshold


def test_matched_iou_maximises_total_iou():
    # P1 covers T1 well (IoU 8/10) and touches T2 (1/13); P2 touches only T1 (1/11).
    # Max total IoU keeps P1-T1 alone; a maximum-cardinality matching would pair P1-T2 and P2-T1.
    truth = np.zeros((1, 1, 30), int)
    pred = np.zeros_like(truth)
    truth[0, 0, 0:10] = 1
    truth[0, 0, 10:22] = 2
    pred[0, 0, 1:10] = 1
    pred[0, 0, 10] = 1
    pred[0, 0, 0] = 2
    s = instance_scores(pred, truth)
    assert s.n_matched == 1 and s.mean_matched_iou == pytest.approx(9 / 11)


def test_identical_instances_with_other_ids_are_perfect():
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 30, (5, 6, 7))
    permuted = np.where(truth > 0, truth + 1000, 0)
    s = instance_scores(Volume(permuted), Volume(truth))
    assert s.f1 == 1.0 and s.mean_matched_iou == 1.0 and s.panoptic_quality == 1.0 and s.fp == 0


def test_against_brute_force():
    rng = np.random.default_rng(4)
    truth = np.kron(rng.integers(0, 6, (1, 4, 4)), np.ones((1, 3, 3), int))
    pred = np.roll(truth, 1, axis=2) + 10 * (rng.random(truth.shape) < 0.1)
    s = instance_scores(pred, truth, iou_threshold=0.3)
    pids, tids = [p for p in np.unique(pred) if p], [t for t in np.unique(truth) if t]
    iou = np.array([[np.sum((pred == p) & (truth == t)) / np.sum((pred == p) | (truth == t)) for t in tids]
                    for p in pids])
    r, c = linear_sum_assignment(iou, maximize=True)
    keep = iou[r, c] > 0
    assert s.n_matched == keep.sum()
    assert s.mean_matched_iou == pytest.approx(iou[r, c][keep].mean())
    ok = np.where(iou >= 0.3, 1.0 + iou, 0.0)
    r2, c2 = linear_sum_assignment(ok, maximize=True)
    assert s.tp == np.sum(ok[r2, c2] > 0)


def test_empty_volumes_are_defined():
    zeros = np.zeros((2, 3, 4), np.int32)
    both = instance_scores(zeros, zeros)
    assert (both.precision, both.recall, both.f1, both.panoptic_quality, both.foreground_iou) == (1, 1, 1, 1, 1)
    assert both.mean_matched_iou is None
    missed = instance_scores(np.zeros((1, 2, 4), int), TRUTH[:, :2, :4])
    assert (missed.tp, missed.fn, missed.recall, missed.f1, missed.panoptic_quality) == (0, 2, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("threshold", [0, -0.1, 1.5, float("nan")])
def test_bad_threshold(threshold):
    with pytest.raises(InputError, match=r"IoU threshold must be in \(0, 1\]"):
        instance_scores(PRED, TRUTH, iou_threshold=threshold)


def test_shape_mismatch():
    with pytest.raises(InputError, match="different shapes"):
        instance_scores(PRED, TRUTH[:, :3])
