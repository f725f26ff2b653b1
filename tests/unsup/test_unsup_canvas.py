"""Slice pre-processing for the attention features: the canvas and its tiles."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.unsup.canvas import CanvasConfig, cut_tiles, join_tiles, prepare_canvas, stretch


def test_cut_and_join_tiles_are_inverse_and_row_major():
    canvas = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    tiles = cut_tiles(canvas, 32)
    assert tiles.shape == (4, 32, 32)
    np.testing.assert_array_equal(tiles[1], canvas[:32, 32:])  # top-right is second
    np.testing.assert_array_equal(tiles[2], canvas[32:, :32])
    np.testing.assert_allclose(join_tiles(tiles, (64, 64)), canvas)
    assert join_tiles(tiles, (40, 50)).shape == (40, 50)
    with pytest.raises(InputError, match="square"):
        join_tiles(tiles[:3], (64, 64))


def test_prepare_canvas_stretches_equalises_and_resizes():
    rng = np.random.default_rng(0)
    image = 1000 + 50 * rng.normal(size=(90, 70))
    out = prepare_canvas(image, CanvasConfig(canvas=128, tile=64))
    assert out.shape == (128, 128) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1 and out.std() > 0.05
    flat = prepare_canvas(np.full((20, 20), 3.0), CanvasConfig(canvas=64, tile=32))
    assert np.all(flat == 0)


def test_stretch_maps_percentiles_to_0_and_1():
    values = np.linspace(-5, 5, 1001)
    out = stretch(values, (10, 90))
    assert out.min() == 0 and out.max() == 1
    assert np.isclose(out[500], 0.5, atol=1e-3)


def test_canvas_config_checks():
    with pytest.raises(InputError, match="multiple of the tile"):
        CanvasConfig(canvas=1000, tile=512)
    with pytest.raises(InputError, match="percentiles"):
        CanvasConfig(percentiles=(90, 10))
    assert CanvasConfig().grid == 2
