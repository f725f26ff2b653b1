"""Training slices from volumes, the train/validation split, batches and label checks."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.io import Volume
from cryoseg.train import SliceSet, batch_indices, check_labels, slices_from_volumes, split


def _volume(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_z_slices_of_two_volumes_in_order_with_their_labels_and_sources():
    a, b = _volume((3, 5, 6), 0), _volume((2, 5, 6), 1)
    la, lb = (a > 0).astype(np.uint8), (b > 1).astype(np.int16) * 2
    out = slices_from_volumes([a, Volume(b)], [la, lb], axis="z", names=["ta", "tb"])
    assert out.images.shape == (5, 5, 6) and out.images.dtype == np.float32
    assert out.labels.shape == (5, 5, 6) and out.labels.dtype == np.int64
    np.testing.assert_array_equal(out.images, np.concatenate([a, b]))
    np.testing.assert_array_equal(out.labels, np.concatenate([la, lb]))
    assert out.sources == ["ta:z0", "ta:z1", "ta:z2", "tb:z0", "tb:z1"]
    assert len(out) == 5


@pytest.mark.parametrize("axis, index, plane", [("y", 2, (4, 6)), ("x", 3, (4, 5))])
def test_other_axes_follow_the_geometry_views(axis, index, plane):
    vol = _volume((4, 5, 6), 2)
    out = slices_from_volumes([vol], axis=axis)
    assert out.labels is None
    assert out.images.shape == (vol.shape[{"y": 1, "x": 2}[axis]], *plane)
    expected = vol[:, index] if axis == "y" else vol[:, :, index]
    np.testing.assert_array_equal(out.images[index], expected)
    assert out.sources[index] == f"volume0:{axis}{index}"


def test_a_2d_image_is_a_stack_of_one():
    img = _volume((5, 6), 3)
    out = slices_from_volumes([img], [np.ones((5, 6), np.int32)])
    assert out.images.shape == (1, 5, 6)
    np.testing.assert_array_equal(out.images[0], img)


def test_mismatched_pair_is_named_in_one_line():
    a, b = _volume((3, 5, 6), 0), _volume((3, 5, 6), 1)
    with pytest.raises(InputError) as err:
        slices_from_volumes([a, b], [np.zeros((3, 5, 6), int), np.zeros((3, 5, 7), int)], names=["good", "bad"])
    msg = str(err.value)
    assert "image 1 (bad)" in msg and "(3, 5, 6)" in msg and "(3, 5, 7)" in msg and "\n" not in msg


def test_refusals():
    a = _volume((3, 5, 6), 0)
    with pytest.raises(InputError, match="slices of shape"):
        slices_from_volumes([a, _volume((3, 5, 7), 1)])
    with pytest.raises(InputError, match="2 image volumes but 1 label"):
        slices_from_volumes([a, a], [np.zeros(a.shape, int)])
    with pytest.raises(InputError, match="whole numbers"):
        slices_from_volumes([a], [np.full(a.shape, 0.5)])
    with pytest.raises(InputError, match="NaN"):
        slices_from_volumes([np.where(a > 1, np.nan, a)])
    with pytest.raises(InputError, match="no volumes"):
        slices_from_volumes([])
    with pytest.raises(InputError):
        slices_from_volumes([a], axis="w")
    with pytest.raises(InputError, match="shape"):
        SliceSet(np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 4), np.int64), ["a", "b"])


def test_whole_number_float_labels_are_accepted():
    a = _volume((2, 3, 4), 0)
    out = slices_from_volumes([a], [np.full(a.shape, 2.0, np.float32)])
    assert out.labels.dtype == np.int64 and np.all(out.labels == 2)


def test_subset_keeps_images_labels_and_sources_together():
    a = _volume((4, 3, 3), 0)
    out = slices_from_volumes([a], [np.arange(4)[:, None, None] * np.ones((4, 3, 3), int)])
    sub = out.subset([3, 1])
    assert sub.sources == ["volume0:z3", "volume0:z1"]
    np.testing.assert_array_equal(sub.images, a[[3, 1]])
    assert sub.labels[:, 0, 0].tolist() == [3, 1]


def test_split_is_deterministic_disjoint_and_complete():
    train, val = split(20, 0.25, seed=7)
    again = split(20, 0.25, seed=7)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(val, again[1])
    assert len(val) == 5 and len(train) == 15
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(20))
    other = split(20, 0.25, seed=8)
    assert not np.array_equal(val, other[1])  # the seed matters
    assert list(train) == sorted(train)


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.99])
def test_split_gives_both_sides_from_two_items(fraction):
    train, val = split(2, fraction, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = split(3, fraction, seed=0)
    assert len(train) >= 1 and len(val) >= 1


def test_split_edge_cases():
    train, val = split(1, 0.5)
    assert train.tolist() == [0] and val.size == 0
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="val_fraction"):
            split(10, bad)
    with pytest.raises(InputError, match="at least one"):
        split(0, 0.2)


def test_batches_depend_only_on_seed_and_epoch():
    b = batch_indices(10, 4, seed=3, epoch=2)
    assert [len(x) for x in b] == [4, 4, 2]
    assert sorted(np.concatenate(b).tolist()) == list(range(10))
    for x, y in zip(b, batch_indices(10, 4, seed=3, epoch=2)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(np.concatenate(b), np.concatenate(batch_indices(10, 4, seed=3, epoch=3)))
    assert np.concatenate(batch_indices(5, 2, 0, 0, shuffle=False)).tolist() == [0, 1, 2, 3, 4]


def test_check_labels_counts_pixels_per_class_including_empty_ones():
    labels = np.array([[0, 0, 1], [3, 3, 3]], np.int16)
    counts = check_labels(labels, n_classes=3)
    assert counts.tolist() == [2, 1, 0, 3]
    assert counts.dtype == np.int64


def test_check_labels_names_values_out_of_range():
    labels = np.array([[0, -1, 1], [5, 2, 5]])
    with pytest.raises(InputError) as err:
        check_labels(labels, n_classes=2)
    msg = str(err.value)
    assert "[-1, 5]" in msg and "0..2" in msg and "\n" not in msg
    with pytest.raises(InputError, match="integers"):
        check_labels(labels.astype(np.float32), 5)
    with pytest.raises(InputError, match="n_classes"):
        check_labels(labels, 0)
