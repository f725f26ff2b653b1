"""Training curves as a PNG, drawn with Pillow: the training loss (left panel) and the validation metric (right
panel) per epoch, the kept (best) epoch marked by a dashed line on both.

    +------------------------+------------------------+
    | train loss             | validation metric      |
    |  curve, best epoch     |  curve, best epoch     |
    |  1     epoch      n    |  1     epoch      n    |
    +------------------------+------------------------+

Without validation the right panel says so, and the best epoch is the one of lowest loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from ..io.atomic import atomic_path
from .history import History

LOSS_COLOUR = (31, 119, 180)
METRIC_COLOUR = (230, 110, 0)
_BEST_COLOUR = (150, 150, 150)
_BACKGROUND = (255, 255, 255)
_TEXT = (30, 30, 30)
_FRAME = (90, 90, 90)
# margins of a panel's plot area: room for the title above, y tick labels left, x tick labels and label below
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 14, 28, 40


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        return ImageFont.load_default()


def _as_history(history: History | Mapping[str, Any]) -> History:
    return history if isinstance(history, History) else History.from_dict(dict(history))


def _value_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    pad = (hi - lo) * 0.06 if hi > lo else max(abs(lo) * 0.1, 1e-3)  # a flat curve sits in the middle
    return lo - pad, hi + pad


def _draw_panel(draw: Any, box: tuple[int, int, int, int], values: Sequence[float], title: str,
                colour: tuple[int, int, int], best_epoch: int, empty_text: str) -> None:
    """One panel in `box` (left, top, right, bottom): title, frame, ticks, the curve, the best epoch."""
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + _LEFT, top + _TOP, right - _RIGHT, bottom - _BOTTOM
    small, medium = _font(12), _font(14)
    draw.text((x0, top + 6), title, fill=_TEXT, font=medium)
    draw.rectangle([x0, y0, x1, y1], outline=_FRAME, width=1)
    vals = np.asarray(values, dtype=np.float64)
    if vals.size == 0:
        draw.text(((x0 + x1) // 2, (y0 + y1) // 2), empty_text, fill=_FRAME, font=medium, anchor="mm")
        return
    lo, hi = _value_range(vals)
    n = vals.size

    def px(i: float, v: float) -> tuple[float, float]:
        fx = 0.5 if n == 1 else i / (n - 1)
        return x0 + 4 + fx * (x1 - x0 - 8), y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for frac in (0.0, 0.5, 1.0):  # y ticks: bottom, middle, top
        v = lo + frac * (hi - lo)
        _, y = px(0, v)
        draw.line([(x0 - 4, y), (x0, y)], fill=_FRAME)
        draw.text((x0 - 6, y), f"{v:.3g}", fill=_TEXT, font=small, anchor="rm")
    for i in sorted({0, n // 2, n - 1}):  # x ticks: first, middle, last epoch (numbered from 1)
        x, _ = px(i, lo)
        draw.line([(x, y1), (x, y1 + 4)], fill=_FRAME)
        draw.text((x, y1 + 6), str(i + 1), fill=_TEXT, font=small, anchor="mt")
    draw.text(((x0 + x1) // 2, bottom - 4), "epoch", fill=_TEXT, font=small, anchor="mb")

    if 0 <= best_epoch < n:
        bx, _ = px(best_epoch, lo)
        for y in range(y0 + 1, y1, 8):  # dashed: Pillow draws no dashed lines
            draw.line([(bx, y), (bx, min(y + 4, y1 - 1))], fill=_BEST_COLOUR)
    run: list[tuple[float, float]] = []
    for i, v in enumerate(vals.tolist()):  # a non-finite value breaks the line
        if math.isfinite(v):
            run.append(px(i, v))
        if not math.isfinite(v) or i == n - 1:
            if len(run) > 1:
                draw.line(run, fill=colour, width=2)
            run = []
    for i, v in enumerate(vals.tolist()):
        if math.isfinite(v) and (n <= 60 or i == best_epoch):  # dots while they do not crowd the line
            x, y = px(i, v)
            r = 4 if i == best_epoch else 2
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)


def render_curves(history: History | Mapping[str, Any], size: tuple[int, int] = (900, 340),
                  title: str | None = None) -> np.ndarray:
    """Draw the curves in memory; `plot_curves` writes them. Returns the RGB image (H, W, 3) uint8, H = size[1],
    W = size[0]; the left half is the loss panel, the right half the validation panel."""
    from PIL import Image, ImageDraw

    hist = _as_history(history)
    if hist.epochs == 0:
        raise InputError("the training history has no epochs to plot")
    width, height = (int(s) for s in size)
    top = 24 if title else 0
    if width < 2 * (_LEFT + _RIGHT) + 80 or height < top + _TOP + _BOTTOM + 60:
        raise InputError(f"curves need at least {2 * (_LEFT + _RIGHT) + 80} x {top + _TOP + _BOTTOM + 60} pixels, "
                         f"got {width} x {height}")
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 4), title, fill=_TEXT, font=_font(16))
    half = width // 2
    _draw_panel(draw, (0, top, half, height), hist.train_loss, "train loss", LOSS_COLOUR,
                hist.best_epoch, "no epochs")
    _draw_panel(draw, (half, top, width, height), hist.val_metric, "validation metric (higher is better)",
                METRIC_COLOUR, hist.best_epoch, "no validation")
    return np.asarray(image)


def plot_curves(history: History | Mapping[str, Any], path: str | Path, size: tuple[int, int] = (900, 340),
                title: str | None = None, inputs: Iterable[str | Path] = ()) -> Path:
    """Write the training curves of `history` (a `History` or its `to_dict()`) as a PNG, atomically.

    Args:
        history: the run's history.
        path: the .png to write.
        size: (width, height) of the picture in pixels.
        title: text drawn above the panels.
        inputs: files that must not be overwritten.

    Returns:
        The written path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UnsupportedFormatError(f"{path}: training curves are written as PNG; use a .png file name")
    rgb = render_curves(history, size=size, title=title)
    from PIL import Image

    with atomic_path(path, inputs=inputs) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path
