"""The student network: configuration, crops, and sliding-window prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryoseg.errors import InputError
from cryoseg.unsup.student import (
    N_CLASSES,
    StudentConfig,
    build_student,
    normalise_slices,
    predict_slices,
    random_crops,
)

SMALL = StudentConfig(channels=(4, 8), strides=(2,), num_res_units=0, dropout=0.0, patch=16)


def test_student_config_checks_and_round_trips():
    assert StudentConfig.from_dict(SMALL.to_dict()) == SMALL
    with pytest.raises(InputError, match="multiple of the strides"):
        StudentConfig(patch=100)
    with pytest.raises(InputError, match="one stride fewer"):
        StudentConfig(channels=(8, 16), strides=(2, 2))
    with pytest.raises(InputError, match="not a student network configuration"):
        StudentConfig.from_dict({"channels": [4]})


def test_random_crops_are_in_bounds_and_favour_labelled_pixels():
    images = np.arange(2 * 40 * 40, dtype=np.float32).reshape(2, 40, 40)
    labels = np.zeros((2, 40, 40), np.int64)
    labels[1, 30:33, 5:8] = 2  # one small labelled spot
    x, y = random_crops(images, labels, 200, 16, np.random.default_rng(0))
    assert x.shape == (200, 16, 16) and y.shape == (200, 16, 16) and y.dtype == np.int64
    # every crop is a window of its slice: consecutive pixels in a row differ by 1
    assert np.all(np.diff(x, axis=2) == 1)
    with_spot = np.mean([np.any(c == 2) for c in y])
    assert with_spot > 0.45  # about half are centred on it; a uniform draw would hit it in ~20 % of crops
    small_x, small_y = random_crops(images[:, :10, :12], labels[:, :10, :12], 3, 16, np.random.default_rng(1))
    assert small_x.shape == (3, 16, 16) and small_y.shape == (3, 16, 16)


def test_predict_slices_gives_probabilities_of_every_pixel():
    torch.manual_seed(0)
    model = build_student(SMALL).eval()
    stack = normalise_slices(np.random.default_rng(0).normal(size=(3, 20, 37)))
    prob = predict_slices(model, stack, SMALL, batch_size=2)
    assert prob.shape == (N_CLASSES, 3, 20, 37) and prob.dtype == np.float32
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
    # slice-wise: predicting one slice alone gives the same as within the batch
    np.testing.assert_allclose(predict_slices(model, stack[2:], SMALL)[:, 0], prob[:, 2], atol=1e-5)
