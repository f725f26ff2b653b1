"""Training curves: a PNG of the requested size whose two panels hold their curves."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cryoseg.errors import InputError, UnsupportedFormatError
from cryoseg.train import History, plot_curves, render_curves
from cryoseg.train.curves import LOSS_COLOUR, METRIC_COLOUR


def _history(validation: bool = True) -> History:
    loss = [2.0 * 0.7**i for i in range(12)]
    val = [0.2 + 0.05 * i for i in range(12)] if validation else []
    return History(loss, val, [0.5] * 12, [{}] * 12, best_epoch=11)


def _count(rgb: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).sum())


def test_png_has_the_size_and_both_panels_hold_their_curve(tmp_path):
    path = plot_curves(_history(), tmp_path / "curves.png", size=(800, 300), title="scsam")
    assert path == tmp_path / "curves.png"
    image = Image.open(path)
    assert image.format == "PNG" and image.size == (800, 300)
    rgb = np.asarray(image.convert("RGB"))
    left, right = rgb[:, :400], rgb[:, 400:]
    assert _count(left, LOSS_COLOUR) > 200 and _count(left, METRIC_COLOUR) == 0
    assert _count(right, METRIC_COLOUR) > 200 and _count(right, LOSS_COLOUR) == 0
    assert len(np.unique(left.reshape(-1, 3), axis=0)) > 3  # text and frame, not one flat colour
    np.testing.assert_array_equal(rgb, render_curves(_history(), size=(800, 300), title="scsam"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]  # no temporary left


def test_loss_curve_falls_from_left_to_right():
    rgb = render_curves(_history(), size=(800, 300))
    rows, cols = np.nonzero(np.all(rgb[:, :400] == LOSS_COLOUR, axis=-1))
    first, last = rows[cols < cols.min() + 5].mean(), rows[cols > cols.max() - 5].mean()
    assert first < last - 100  # image rows grow downwards: a falling loss goes down the picture


def test_without_validation_the_right_panel_says_so():
    rgb = render_curves(_history(validation=False), size=(800, 300))
    assert _count(rgb[:, 400:], METRIC_COLOUR) == 0
    assert _count(rgb[:, :400], LOSS_COLOUR) > 200
    assert np.any(rgb[60:240, 480:780] != 255)  # the "no validation" text


def test_a_dict_history_draws_the_same():
    np.testing.assert_array_equal(render_curves(_history().to_dict()), render_curves(_history()))


def test_one_epoch_and_a_flat_curve_draw():
    rgb = render_curves(History([1.0], [0.5], [0.1], [{}], best_epoch=0))
    assert _count(rgb, LOSS_COLOUR) > 10 and _count(rgb, METRIC_COLOUR) > 10


def test_refusals(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="PNG"):
        plot_curves(_history(), tmp_path / "curves.jpg")
    with pytest.raises(InputError, match="no epochs"):
        plot_curves(History(), tmp_path / "c.png")
    with pytest.raises(InputError, match="pixels"):
        render_curves(_history(), size=(50, 50))
    assert not list(tmp_path.iterdir())
