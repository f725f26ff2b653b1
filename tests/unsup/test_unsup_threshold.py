"""Adaptive thresholding: no foreground on a ramp (borders included), thin lines found on a strong ramp where a
global Otsu threshold fails, and bad settings refused."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_local, threshold_otsu

from cryoseg.errors import InputError
from cryoseg.unsup.threshold import ThresholdConfig, adaptive_threshold

H, W = 64, 96
YY, XX = np.mgrid[:H, :W]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("ramp", [XX / (W - 1), 1.0 - YY / (H - 1), 0.4 * XX / (W - 1) + 0.6 * YY / (H - 1)])
def test_a_linear_ramp_has_no_foreground_anywhere(ramp):
    # A tiny offset: the local mean of a linear function equals it, so only round-off separates the two.
    fine = ThresholdConfig(offset=1e-6)
    assert adaptive_threshold(ramp, fine).sum() == 0
    assert adaptive_threshold(ramp).sum() == 0


def test_scipy_border_modes_alone_would_mark_the_bright_border_of_a_ramp():
    """Why the map is extended by point reflection: with plain "reflect" padding the same blur and local
    threshold mark a band of columns at the bright end of the ramp."""
    ramp = XX / (W - 1)
    blurred = ndimage.gaussian_filter(ramp, 1.5, mode="reflect")
    plain = blurred > threshold_local(blurred, 15, method="gaussian", mode="reflect") + 1e-6
    assert plain.any() and np.nonzero(plain)[1].min() > W - 15  # all of it at the bright border


def test_thin_lines_on_a_strong_ramp_are_found_where_a_global_otsu_threshold_fails():
    lines = np.zeros((H, W), bool)
    for x0 in (12, 40, 70):
        lines[:, x0 : x0 + 3] = True
    lines[30:33, :] = True
    image = 0.7 * XX / (W - 1) + 0.3 * lines  # the ramp spans more than twice the lines' contrast
    found = adaptive_threshold(image)
    assert found.dtype == bool and found.shape == (H, W)
    assert _iou(found, lines) >= 0.8
    assert found[lines].mean() > 0.95  # every line found along its length, the darkest one too
    otsu = image > threshold_otsu(image)
    assert _iou(otsu, lines) < 0.4
    assert (otsu & ~lines).sum() > 2 * lines.sum()  # a global threshold takes the bright part of the ramp too


def test_offset_and_blur_are_applied():
    dot = np.zeros((31, 31))
    dot[15, 15] = 1.0
    dim = 0.05 * dot
    assert adaptive_threshold(dot).any()
    # After a 1.5 px blur the dim dot peaks ~0.05 / (2 pi 1.5^2) ~ 0.0035 above its surroundings, under 3 / 255.
    assert not adaptive_threshold(dim).any()
    assert adaptive_threshold(dim, ThresholdConfig(offset=0.001)).any()
    no_blur = adaptive_threshold(dot, ThresholdConfig(blur_sigma=0.0))
    assert np.array_equal(np.argwhere(no_blur), [[15, 15]])


@pytest.mark.parametrize("block_size", [14, 1, 2, 0, -3, 15.0])
def test_bad_block_size(block_size):
    with pytest.raises(InputError, match="block_size"):
        ThresholdConfig(block_size=block_size)


def test_bad_input():
    with pytest.raises(InputError, match="blur_sigma"):
        ThresholdConfig(blur_sigma=-1.0)
    with pytest.raises(InputError, match="H, W"):
        adaptive_threshold(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="finite"):
        adaptive_threshold(np.full((8, 8), np.nan))
