"""Segmentation metrics: IoU, Dice, mIoU on tiny arrays computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.eval import overlap, segmentation_scores
from cryoseg.io import Volume

# 1 x 2 x 5 volume. Class 1: truth 4 voxels, pred 3, overlap 2 -> IoU 2/5, Dice 4/7.
# Class 2: truth 2, pred 3, overlap 2 -> IoU 2/3, Dice 4/5.
TRUTH = np.array([[[1, 1, 1, 1, 0],
                   [2, 2, 0, 0, 0]]])
PRED = np.array([[[0, 1, 1, 2, 0],
                  [2, 2, 1, 0, 0]]])


def test_iou_and_dice_by_hand():
    s = segmentation_scores(PRED, TRUTH)
    assert set(s.per_class) == {1, 2}  # background 0 is not scored
    c1, c2 = s.per_class[1], s.per_class[2]
    assert (c1.intersection, c1.n_pred, c1.n_truth) == (2, 3, 4)
    assert c1.iou == pytest.approx(2 / 5) and c1.dice == pytest.approx(4 / 7)
    assert c2.iou == pytest.approx(2 / 3) and c2.dice == pytest.approx(4 / 5)
    assert s.mean_iou == pytest.approx((2 / 5 + 2 / 3) / 2)
    assert s.mean_dice == pytest.approx((4 / 7 + 4 / 5) / 2)
    assert s.accuracy == pytest.approx(7 / 10)  # agree at 7 of 10 voxels (3 of them background)
    assert s.n_voxels == 10


def test_identical_labels_give_miou_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (6, 7, 8))
    s = segmentation_scores(labels, labels.copy())
    assert s.mean_iou == 1.0 and s.mean_dice == 1.0 and s.accuracy == 1.0
    assert sorted(s.per_class) == [1, 2, 3, 4]


def test_boolean_masks():
    truth = np.zeros((2, 3, 3), bool)
    truth[0, :2, :2] = True  # 4 voxels
    pred = np.zeros_like(truth)
    pred[0, 1:, 1:] = True  # 4 voxels, 1 shared
    s = segmentation_scores(pred, truth)
    assert list(s.per_class) == [1]
    assert s.mean_iou == pytest.approx(1 / 7) and s.per_class[1].dice == pytest.approx(2 / 8)


def test_background_in_miou_on_request_and_explicit_classes():
    s = segmentation_scores(PRED, TRUTH, background=None)
    assert set(s.per_class) == {0, 1, 2}
    # Class 0: truth 4, pred 4, overlap 3 -> IoU 3/5.
    assert s.per_class[0].iou == pytest.approx(3 / 5)
    assert s.mean_iou == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    only2 = segmentation_scores(PRED, TRUTH, classes=[2, 7])
    assert only2.per_class[7].iou is None and only2.per_class[7].dice is None  # absent from both
    assert only2.mean_iou == pytest.approx(2 / 3)  # undefined classes are left out of the mean


def test_ignore_label_removes_voxels():
    truth = TRUTH.copy()
    truth[0, 1, 2] = 255  # the voxel where pred says 1 and truth said 0
    s = segmentation_scores(PRED, truth, ignore=255)
    assert s.per_class[1].n_pred == 2 and s.per_class[1].iou == pytest.approx(2 / 4)
    assert s.n_voxels == 9 and 255 not in s.per_class


def test_all_background_is_defined():
    zeros = np.zeros((3, 4, 5), np.uint8)
    s = segmentation_scores(zeros, zeros)
    assert s.per_class == {} and s.mean_iou == 1.0 and s.mean_dice == 1.0
    empty_pred = segmentation_scores(zeros, np.ones_like(zeros))
    assert empty_pred.mean_iou == 0.0 and empty_pred.per_class[1].n_pred == 0


def test_volumes_float_labels_and_json():
    s = segmentation_scores(Volume(PRED.astype(np.float32)), Volume(TRUTH.astype(np.int8)))
    assert s.per_class[1].iou == pytest.approx(2 / 5)
    d = s.to_dict()
    json.dumps(d)
    assert d["per_class"]["2"]["iou"] == pytest.approx(2 / 3)
    assert "IoU" in [c.header for c in s.to_table().columns]


def test_chunked_counting_matches_one_chunk(monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, (9, 10, 11))
    b = rng.integers(0, 4, (9, 10, 11))
    whole = segmentation_scores(a, b)
    monkeypatch.setattr(overlap, "CHUNK_VOXELS", 110)  # one z slice per chunk
    chunked = segmentation_scores(a, b)
    assert chunked.to_dict() == whole.to_dict()
    # By hand for one class, with plain boolean arithmetic.
    inter, union = np.sum((a == 3) & (b == 3)), np.sum((a == 3) | (b == 3))
    assert chunked.per_class[3].iou == pytest.approx(inter / union)


def test_sparse_large_label_ids():
    a = np.array([[[0, 10**7, 10**7, 5]]])
    b = np.array([[[0, 10**7, 3, 5]]])
    s = segmentation_scores(a, b)
    assert s.per_class[10**7].iou == pytest.approx(1 / 2) and s.per_class[5].iou == 1.0
    assert s.per_class[3].iou == 0.0


@pytest.mark.parametrize("pred, truth, message", [
    (np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), "different shapes"),
    (np.full((2, 2, 2), 0.5), np.zeros((2, 2, 2)), "non-integer values"),
    (np.array(["a", "b"]), np.array(["a", "b"]), "integer labels or a boolean mask"),
    (np.zeros((2, 2, 2)), np.full((2, 2, 2), np.nan), "non-integer values"),
])
def test_bad_inputs(pred, truth, message):
    with pytest.raises(InputError, match=message):
        segmentation_scores(pred, truth)
