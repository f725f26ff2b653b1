"""The classical point-prompted segmenter: masks on noisy synthetic objects, prompts, priors, batching."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.models.base import PromptableSegmenter, SliceEmbedding
from cryoseg.models.classical import ClassicalConfig, ClassicalSegmenter

SHAPE = (96, 120)


def _disk(shape, centre, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def _image(objects, shape=SHAPE, noise=0.5, value=-1.0, seed=0, scale=40.0, offset=300.0):
    """Objects (bool masks) at `value` on a 0 background, blurred (sigma 1), noisy, then mapped to an odd range."""
    img = np.zeros(shape)
    for m in objects:
        img[m] = value
    img = ndimage.gaussian_filter(img, 1.0) + np.random.default_rng(seed).normal(0, noise, shape)
    return img * scale + offset


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


def _point(y, x):
    return np.array([[[y, x]]], float), np.array([[1]])


@pytest.fixture(scope="module")
def seg():
    return ClassicalSegmenter()


def test_noisy_dark_disk_is_segmented(seg):
    truth = _disk(SHAPE, (45, 55), 14)
    emb = seg.embed(_image([truth]))
    pred = seg.predict(emb, *_point(45, 55))
    assert isinstance(seg, PromptableSegmenter)
    assert pred.masks.shape == (1, 1, *SHAPE) and pred.masks.dtype == bool
    assert pred.logits.shape == (1, 1, *SHAPE) and pred.logits.dtype == np.float32
    assert pred.iou_scores.shape == (1, 1) and 0.5 < pred.iou_scores[0, 0] <= 1
    assert _iou(pred.masks[0, 0], truth) > 0.9
    np.testing.assert_array_equal(pred.masks, pred.logits > 0)


def test_bright_disk_off_the_click_centre_and_multimask(seg):
    truth = _disk(SHAPE, (50, 70), 11)
    emb = seg.embed(_image([truth], value=+1.0, seed=1))
    pred = seg.predict(emb, *_point(46, 66), multimask=True)
    assert pred.masks.shape == (1, 3, *SHAPE) and pred.iou_scores.shape == (1, 3)
    areas = pred.masks[0].sum(axis=(1, 2))
    assert areas[0] >= areas[1] >= areas[2] > 0  # loose, middle, tight
    assert _iou(pred.best().masks[0, 0], truth) > 0.9
    np.testing.assert_array_equal(pred.masks, pred.logits > 0)


def test_negative_point_excludes_a_touching_neighbour(seg):
    a, b = _disk(SHAPE, (48, 40), 14), _disk(SHAPE, (48, 66), 12)  # centres 26 apart: the disks touch
    emb = seg.embed(_image([a, b], seed=2))
    merged = seg.predict(emb, *_point(48, 40)).masks[0, 0]
    assert merged[b].mean() > 0.8  # without help the touching blob is taken too
    pts = np.array([[[48, 40], [48, 68]]], float)
    cut = seg.predict(emb, pts, np.array([[1, 0]])).masks[0, 0]
    assert _iou(cut, a) > 0.85
    assert cut[b & ~a].mean() < 0.1
    assert not cut[48, 68]


def test_mask_prior_keeps_the_mask_on_the_previous_object(seg):
    a, b = _disk(SHAPE, (48, 40), 14), _disk(SHAPE, (48, 66), 12)
    emb = seg.embed(_image([a, b], seed=3))
    prior = np.where(a, 4.0, -4.0).astype(np.float32)[None]  # what the previous slice would pass on
    pred = seg.predict(emb, *_point(48, 40), mask_logits=prior)
    m = pred.masks[0, 0]
    allowed = ndimage.binary_dilation(a, iterations=ClassicalConfig().min_growth + 4)
    assert not (m & ~allowed).any()
    assert _iou(m, a) > 0.85


def test_prior_with_only_a_negative_point_grows_from_the_prior(seg):
    """A prior alone is not a prompt (`check_prompts`); with a negative point elsewhere, the mask grows from the
    prior's innermost pixel."""
    truth = _disk(SHAPE, (40, 60), 12)
    emb = seg.embed(_image([truth], seed=4))
    prior = np.where(_disk(SHAPE, (41, 61), 11), 4.0, -4.0).astype(np.float32)[None]
    pred = seg.predict(emb, np.array([[[85.0, 10.0]]]), np.array([[0]]), mask_logits=prior)
    assert _iou(pred.masks[0, 0], truth) > 0.85


def test_hollow_particle_clicked_in_its_cavity_gives_the_whole_particle(seg):
    outer, cavity = _disk(SHAPE, (48, 60), 14), _disk(SHAPE, (48, 60), 8)
    img = np.zeros(SHAPE)
    img[outer] = -1.0
    img[cavity] = 0.3  # a cavity slightly brighter than the background, as CTF fringes make it
    img = ndimage.gaussian_filter(img, 1.0) + np.random.default_rng(13).normal(0, 0.4, SHAPE)
    pred = seg.predict(seg.embed(img), *_point(48, 60))
    assert _iou(pred.masks[0, 0], outer) > 0.85


def test_a_click_on_a_membrane_keeps_the_lumen_out(seg):
    ring = _disk(SHAPE, (48, 60), 30) & ~_disk(SHAPE, (48, 60), 25)
    pred = seg.predict(seg.embed(_image([ring], seed=14)), *_point(48, 60 + 27))
    m = pred.masks[0, 0]
    assert _iou(m, ring) > 0.7
    assert not m[48, 60] and m[_disk(SHAPE, (48, 60), 20)].mean() < 0.05


def test_box_prompt(seg):
    truth = _disk(SHAPE, (50, 60), 16)
    emb = seg.embed(_image([truth], value=1.0, seed=5))
    pred = seg.predict(emb, np.zeros((1, 0, 2)), np.zeros((1, 0), int), boxes=np.array([[32, 42, 68, 78]], float))
    assert _iou(pred.masks[0, 0], truth) > 0.85


def test_mask_vanishes_on_an_empty_slice(seg):
    emb = seg.embed(_image([], seed=6))
    grid = np.array([[y, x] for y in range(10, 90, 16) for x in range(10, 115, 16)], float)
    pred = seg.predict(emb, grid[:, None], np.ones((len(grid), 1), int))
    assert pred.masks.sum() == 0
    assert np.all(pred.iou_scores == 0)
    assert np.all(pred.logits <= 0)


def test_mask_vanishes_past_the_end_of_an_object_given_its_prior(seg):
    emb = seg.embed(_image([], seed=7))
    prior = np.where(_disk(SHAPE, (48, 60), 6), 4.0, -4.0).astype(np.float32)[None]
    pred = seg.predict(emb, *_point(48, 60), mask_logits=prior)
    assert pred.masks.sum() == 0


def test_propagation_through_a_sphere_stops_at_its_end(seg):
    """Mimic 3D propagation: each slice is prompted with the previous mask's deepest point and its logits."""
    zz, yy, xx = np.mgrid[:36, :64, :64]
    sphere = (zz - 12) ** 2 + (yy - 32) ** 2 + (xx - 32) ** 2 <= 10**2
    vol = ndimage.gaussian_filter(-sphere.astype(float), 1.0)
    vol += np.random.default_rng(8).normal(0, 0.6, vol.shape)
    point, prior, prev, last = np.array([32.0, 32.0]), None, None, None
    for z in range(12, 36):
        pred = seg.predict(seg.embed(vol[z]), point[None, None], np.array([[1]]), mask_logits=prior).best()
        m = pred.masks[0, 0]
        if not m.any() or (prev is not None and _iou(m, prev) < 0.5):
            break
        if sphere[z].sum() > 100:  # well inside the sphere the masks must be good
            assert _iou(m, sphere[z]) > 0.8
        dist = ndimage.distance_transform_edt(m)
        point = np.array(np.unravel_index(np.argmax(dist), m.shape), float)
        prior, prev, last = pred.logits[:, 0], m, z
    assert last is not None and 20 <= last <= 23  # the sphere's last slice is z = 22


def test_batched_equals_one_at_a_time(seg):
    a, b = _disk(SHAPE, (30, 30), 9), _disk(SHAPE, (60, 85), 12)
    emb = seg.embed(_image([a, b], seed=9))
    pts = np.array([[[30, 30], [60, 85]], [[60, 85], [30, 30]], [[5, 5], [-1, -1]]], float)
    labels = np.array([[1, 0], [1, 0], [1, -1]])
    prior = np.full((3, *SHAPE), -4.0, np.float32)
    prior[1][b] = 4.0
    together = seg.predict(emb, pts, labels, mask_logits=prior, multimask=True)
    for i in range(3):
        alone = seg.predict(emb, pts[i:i + 1], labels[i:i + 1], mask_logits=prior[i:i + 1], multimask=True)
        np.testing.assert_array_equal(together.masks[i], alone.masks[0])
        np.testing.assert_array_equal(together.logits[i], alone.logits[0])
        np.testing.assert_array_equal(together.iou_scores[i], alone.iou_scores[0])
    assert _iou(together.best().masks[0, 0], a) > 0.8 and _iou(together.best().masks[1, 0], b) > 0.8


def test_returned_logits_are_accepted_back_and_only_at_their_own_resolution(seg):
    truth = _disk(SHAPE, (48, 60), 13)
    emb = seg.embed(_image([truth], seed=10))
    first = seg.predict(emb, *_point(48, 60))
    again = seg.predict(emb, *_point(48, 60), mask_logits=first.logits[:, 0])
    assert _iou(again.masks[0, 0], truth) > 0.9
    low = ndimage.zoom(first.logits[:, 0], (1, 48 / 96, 60 / 120), order=1)  # e.g. a SAM-style low-res prior
    with pytest.raises(InputError, match=r"mask_logits must have shape \(1, 96, 120\)"):
        seg.predict(emb, *_point(48, 60), mask_logits=low)


def test_embedding_round_trips_through_arrays(seg):
    emb = seg.embed(_image([_disk(SHAPE, (48, 60), 10)], seed=11))
    arrays = seg.embedding_arrays(emb)
    assert set(arrays) == {"smooth"} and arrays["smooth"].shape == SHAPE
    back = seg.embedding_from_arrays(arrays, SHAPE)
    a = seg.predict(emb, *_point(48, 60))
    b = seg.predict(back, *_point(48, 60))
    np.testing.assert_array_equal(a.masks, b.masks)


def test_signature_covers_the_embedding_parameters_only():
    base = ClassicalSegmenter().signature()
    assert base["name"] == "classical"
    assert ClassicalSegmenter(ClassicalConfig(smoothing_sigma=2.0)).signature() != base
    assert ClassicalSegmenter(ClassicalConfig(min_contrast=4.0)).signature() == base


@pytest.mark.parametrize("points, labels, kwargs, match", [
    (np.array([[[100.0, 5.0]]]), np.array([[1]]), {}, "outside the slice"),
    (np.array([[[5.0, -3.0]]]), np.array([[0]]), {}, "outside the slice"),
    (np.array([[5.0, 5.0]]), np.array([[1]]), {}, r"\(B, P, 2\)"),
    (np.array([[[5.0, 5.0]]]), np.array([[1, 1]]), {}, "point_labels"),
    (np.array([[[5.0, 5.0]]]), np.array([[3]]), {}, "labels"),
    (np.array([[[np.nan, 5.0]]]), np.array([[1]]), {}, "NaN"),
    (np.array([[[5.0, 5.0]]]), np.array([[1]]), {"boxes": np.array([[10.0, 10.0, 5.0, 20.0]])}, "boxes"),
    (np.array([[[5.0, 5.0]]]), np.array([[1]]), {"mask_logits": np.zeros((2, 8, 8))}, "mask_logits"),
])
def test_bad_prompts_are_rejected(seg, points, labels, kwargs, match):
    emb = seg.embed(_image([], seed=12))
    with pytest.raises(InputError, match=match):
        seg.predict(emb, points, labels, **kwargs)


def test_bad_images_and_foreign_embeddings_are_rejected(seg):
    with pytest.raises(InputError, match="2D slice"):
        seg.embed(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="NaN"):
        seg.embed(np.full((8, 8), np.nan))
    with pytest.raises(InputError, match="classical"):
        seg.predict(SliceEmbedding(np.zeros((4, 8, 8)), (8, 8)), *_point(1, 1))


@pytest.mark.parametrize("kwargs, match", [
    ({"thresholds": (0.5, 0.6)}, "thresholds"),
    ({"thresholds": (0.2, 0.5, 1.5)}, "thresholds"),
    ({"prior_weight": 1.0}, "prior_weight"),
    ({"min_contrast": 0.0}, "min_contrast"),
    ({"extra_smoothing": ()}, "extra_smoothing"),
    ({"context_radius": 300}, "context_radius"),
])
def test_bad_configs_are_rejected(kwargs, match):
    with pytest.raises(InputError, match=match):
        ClassicalConfig(**kwargs)
