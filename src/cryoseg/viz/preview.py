"""Orthogonal-slice previews (PNG) with label overlay, picks and a crosshair, drawn with numpy + Pillow.

Layout (an orthoview, as in IMOD or Fiji's "Orthogonal Views"):

    +-----------------+-----+
    | z plane (y, x)  | x   |   the x plane is shown transposed, rows y and columns z,
    |                 |plane|   so it shares its rows with the z plane;
    +-----------------+-----+
    | y plane (z, x)  |info |   the y plane shares its columns with the z plane.
    +-----------------+-----+

Every panel is drawn at the same number of pixels per Å, so anisotropic voxels keep their true
aspect. Small volumes are scaled up (by a whole factor where possible, so voxels stay crisp) until
the picture's longest side is at least `PreviewConfig.min_size`; very large ones are scaled down
to `max_size`.
"""

from __future__ import annotations

import colorsys
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from ..geometry import AXIS, VIEWS, in_plane_axes, outside_volume, to_voxel, view_slice
from ..io.atomic import atomic_path
from ..io.particles import Particles
from ..io.volume import Volume

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewConfig:
    """Defaults for previews.

    Attributes:
        min_size: smallest length of the picture's longest side, in pixels.
        max_size: largest length of the picture's longest side, in pixels.
        percentiles: intensity percentiles (of the three shown planes) mapped to black and white.
        overlay_alpha: opacity of the label colours.
        pick_radius: radius of a pick's circle in voxels (along x). A pick is drawn on a plane when
            its centre lies within this radius of it, as the cross-section of a sphere.
        gap: pixels between panels.
    """

    min_size: int = 512
    max_size: int = 2048
    percentiles: tuple[float, float] = (1.0, 99.0)
    overlay_alpha: float = 0.45
    pick_radius: float = 5.0
    gap: int = 6


_DEFAULTS = PreviewConfig()
_BACKGROUND = (24, 24, 24)
_PICK_COLOUR = (255, 220, 0)
_CROSSHAIR = (255, 255, 255, 110)


@dataclass(frozen=True)
class Panel:
    """Where one plane sits in the picture.

    Attributes:
        view: "z", "y" or "x": the axis held fixed.
        left, top, width, height: the panel's box in pixels.
        row_axis, col_axis: volume axes (0 z, 1 y, 2 x) along the panel's rows and columns.
        row_scale, col_scale: pixels per voxel along those axes.
    """

    view: str
    left: int
    top: int
    width: int
    height: int
    row_axis: int
    col_axis: int
    row_scale: float
    col_scale: float

    def pixel(self, row: float, col: float) -> tuple[int, int]:
        """(x, y) pixel in the picture of the centre of voxel (row, col) of this plane."""
        return (int(self.left + (col + 0.5) * self.col_scale), int(self.top + (row + 0.5) * self.row_scale))


@dataclass
class RenderedPreview:
    """A rendered preview: the RGB image (H, W, 3) uint8, the panel boxes and the slice point (z, y, x)."""

    image: np.ndarray
    panels: dict[str, Panel]
    point: tuple[int, int, int]


def label_colour(label: int) -> tuple[int, int, int]:
    """A bright colour for a label id; neighbouring ids get very different hues (golden-ratio steps)."""
    hue = (int(label) * 0.6180339887 + 0.05) % 1.0
    sat = 0.9 if int(label) % 2 else 0.7
    r, g, b = colorsys.hsv_to_rgb(hue, sat, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def _as_volume(volume: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    if isinstance(volume, Volume):
        data, vs = volume.data, np.asarray(volume.voxel_size, float)
        if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            logger.warning("voxel size %s Å is missing or invalid; drawing voxels as cubes", volume.voxel_size)
            vs = np.ones(3)
        return data, tuple(float(v) for v in vs)
    data = np.asarray(volume)
    if data.ndim != 3:
        raise InputError(f"preview needs a 3D volume (z, y, x), got an array of shape {data.shape}")
    return data, (1.0, 1.0, 1.0)


def _check_point(point: Any, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if point is None:
        return tuple(int(s) // 2 for s in shape)  # type: ignore[return-value]
    try:
        p = np.asarray(point, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"preview point must be three numbers (z, y, x), got {point!r}") from exc
    if p.size != 3 or not np.all(np.isfinite(p)):
        raise InputError(f"preview point must be three finite numbers (z, y, x), got {point!r}")
    if outside_volume(p, shape)[0]:
        raise InputError(f"preview point (z, y, x) = {tuple(p.tolist())} is outside the volume of shape {shape}")
    return tuple(int(v) for v in to_voxel(p[None], shape)[0])  # type: ignore[return-value]


# (row axis, column axis) of each panel: the views' own, but the x panel stands beside the z panel, so its
# rows must be y as the z panel's are: it is shown transposed, (Y, Z).
_AXES = {**{v: in_plane_axes(v) for v in VIEWS}, "x": in_plane_axes("x")[::-1]}


def _planes(data: np.ndarray, point: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The three planes through `point`: z -> (Y, X), y -> (Z, X), x -> (Y, Z) (transposed for the layout)."""
    planes = {v: np.asarray(view_slice(data, v, point[AXIS[v]])) for v in VIEWS}
    planes["x"] = planes["x"].T
    return planes


def _layout(shape: tuple[int, ...], vs: tuple[float, float, float], cfg: PreviewConfig,
            top: int) -> tuple[dict[str, Panel], int, int]:
    """Panel boxes and the picture size (width, height) at one common pixels-per-Å scale."""
    ext = np.asarray(shape, float) * np.asarray(vs)  # Å along z, y, x
    unit = 1.0 / min(vs)  # one pixel for the finest voxel
    longest = max(ext[2] + ext[0], ext[1] + ext[0]) * unit  # panels only; the gap does not scale
    if longest + cfg.gap < cfg.min_size:
        unit *= math.ceil((cfg.min_size - cfg.gap) / longest)  # a whole factor keeps voxels as equal blocks
    elif longest + cfg.gap > cfg.max_size:
        unit *= (cfg.max_size - cfg.gap) / longest
    px = np.maximum(1, np.round(ext * unit)).astype(int)  # panel lengths in pixels along z, y, x
    scale = px / np.asarray(shape, float)  # pixels per voxel
    panels = {}
    for view, (left, ptop) in {"z": (0, 0), "x": (px[2] + cfg.gap, 0), "y": (0, px[1] + cfg.gap)}.items():
        ra, ca = _AXES[view]
        panels[view] = Panel(view, int(left), int(ptop + top), int(px[ca]), int(px[ra]), ra, ca,
                             float(scale[ra]), float(scale[ca]))
    width = int(px[2] + px[0] + cfg.gap)
    height = int(px[1] + px[0] + cfg.gap + top)
    return panels, width, height


def _grey(planes: dict[str, np.ndarray], percentiles: tuple[float, float]) -> dict[str, np.ndarray]:
    """Scale intensities to uint8 with percentiles shared by the three planes (so panels compare)."""
    values = np.concatenate([p.astype(np.float64, copy=False).ravel() for p in planes.values()])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(v) for v in np.percentile(finite, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    out = {}
    for view, plane in planes.items():
        scaled = (plane.astype(np.float64) - lo) / (hi - lo)
        out[view] = (np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    return out


def _resize(plane: np.ndarray, panel: Panel, labels: bool) -> np.ndarray:
    from PIL import Image

    size = (panel.width, panel.height)
    if plane.shape[::-1] == size:
        return plane
    if labels:  # label ids: nearest neighbour only, via an index map (ids may exceed 8 bits)
        rows = np.minimum((np.arange(panel.height) + 0.5) / panel.row_scale, plane.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(panel.width) + 0.5) / panel.col_scale, plane.shape[1] - 1).astype(int)
        return plane[np.ix_(rows, cols)]
    upscale = panel.width >= plane.shape[1] and panel.height >= plane.shape[0]
    method = Image.Resampling.NEAREST if upscale else Image.Resampling.BOX
    return np.asarray(Image.fromarray(plane).resize(size, method))


def _overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a translucent colour per non-zero label id into `rgb` (H, W, 3) uint8."""
    ids = np.unique(labels)
    ids = ids[ids != 0]
    if ids.size == 0:
        return rgb
    palette = np.array([label_colour(int(i)) for i in ids], dtype=np.float64)
    where = labels != 0
    colours = palette[np.searchsorted(ids, labels[where])]
    out = rgb.astype(np.float64)
    out[where] = (1 - alpha) * out[where] + alpha * colours
    return np.round(out).astype(np.uint8)


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed bitmap font
        return ImageFont.load_default()


def _as_particles(picks: Any) -> Particles | None:
    if picks is None or isinstance(picks, Particles):
        return picks
    return Particles(np.asarray(picks, dtype=np.float64))


def _draw_picks(layer: Any, panels: dict[str, Panel], picks: Particles, point: tuple[int, int, int],
                vs: tuple[float, float, float], radius_vox: float) -> int:
    """Circles for picks near each plane (sphere cross-sections); returns how many circles were drawn.

    Each panel is drawn on its own transparent tile, so circles near an edge are clipped to their panel.
    """
    from PIL import Image, ImageDraw

    radius_a = radius_vox * vs[2]  # the radius in Å (given in voxels along x)
    drawn = 0
    for view in VIEWS:
        panel, axis = panels[view], AXIS[view]
        px_per_a = panel.col_scale / vs[panel.col_axis]
        offset_a = np.abs(picks.coords[:, axis] - point[axis]) * vs[axis]
        near = np.flatnonzero(offset_a <= radius_a)
        if near.size == 0:
            continue
        tile = Image.new("RGBA", (panel.width, panel.height), (0, 0, 0, 0))
        draw = ImageDraw.Draw(tile)
        for i in near.tolist():
            r_px = max(3.0, math.sqrt(max(radius_a**2 - offset_a[i] ** 2, 0.0)) * px_per_a)
            cx, cy = panel.pixel(picks.coords[i, panel.row_axis], picks.coords[i, panel.col_axis])
            cx, cy = cx - panel.left, cy - panel.top
            colour = label_colour(int(picks.classes[i])) if picks.classes is not None else _PICK_COLOUR
            box = [cx - r_px, cy - r_px, cx + r_px, cy + r_px]
            draw.ellipse(box, outline=(0, 0, 0, 255), width=4)  # dark rim: visible on any background
            draw.ellipse(box, outline=colour + (255,), width=2)
            drawn += 1
        layer.alpha_composite(tile, dest=(panel.left, panel.top))
    return drawn


def _draw_crosshair(draw: Any, panels: dict[str, Panel], point: tuple[int, int, int]) -> None:
    for panel in panels.values():
        x, y = panel.pixel(point[panel.row_axis], point[panel.col_axis])
        draw.line([(panel.left, y), (panel.left + panel.width - 1, y)], fill=_CROSSHAIR, width=1)
        draw.line([(x, panel.top), (x, panel.top + panel.height - 1)], fill=_CROSSHAIR, width=1)


def _draw_text(draw: Any, panels: dict[str, Panel], point: tuple[int, int, int], shape: tuple[int, ...],
               vs: tuple[float, float, float], title: str | None, width: int, cfg: PreviewConfig) -> None:
    small = _font(13)
    for view in VIEWS:
        panel, axis = panels[view], AXIS[view]
        rows_cols = f"({'zyx'[panel.row_axis]}, {'zyx'[panel.col_axis]})"
        if panel.height >= 20 and panel.width >= 60:
            text = f"{view} = {point[axis]}  {rows_cols}"
            draw.text((panel.left + 4, panel.top + 3), text, fill=(255, 255, 255, 255), font=small,
                      stroke_width=2, stroke_fill=(0, 0, 0, 255))
    info_left = panels["x"].left + 4
    info_top = panels["y"].top + 3
    # "A" for Å: Pillow's default font has no Å glyph.
    lines = [f"shape {shape[0]}x{shape[1]}x{shape[2]}", f"point {point[0]},{point[1]},{point[2]}",
             "voxel " + "x".join(f"{v:g}" for v in vs) + " A"]
    if width - info_left >= 90 and panels["y"].height >= 48:
        draw.multiline_text((info_left, info_top), "\n".join(lines), fill=(200, 200, 200, 255), font=small)
    if title:
        draw.text((cfg.gap, 4), title, fill=(255, 255, 255, 255), font=_font(16))


_LINE = 16  # pixels per text line of the 13-pixel font


def _draw_legend(draw: Any, panels: dict[str, Panel], ids: np.ndarray, width: int) -> None:
    """A colour swatch and the id of each label shown, in the panel below the info text, as far as it fits."""
    left = panels["x"].left + 4
    top = panels["y"].top + 3 + 3 * _LINE + 6  # below the three info lines
    bottom = panels["y"].top + panels["y"].height
    rows = (bottom - top) // _LINE - 1  # one line for the heading
    if ids.size == 0 or rows < 1 or width - left < 60:
        return
    small = _font(13)
    draw.text((left, top), "labels", fill=(200, 200, 200, 255), font=small)
    columns = max(1, (width - left) // 60)
    shown = ids if ids.size <= rows * columns else ids[: rows * columns - 1]
    for k, label in enumerate(shown.tolist()):
        x = left + (k // rows) * 60
        y = top + _LINE * (1 + k % rows)
        draw.rectangle([x, y + 2, x + 11, y + 13], fill=label_colour(label) + (255,))
        draw.text((x + 16, y), str(label), fill=(200, 200, 200, 255), font=small)
    if shown.size < ids.size:
        k = shown.size
        draw.text((left + (k // rows) * 60, top + _LINE * (1 + k % rows)), f"+{ids.size - k} more",
                  fill=(200, 200, 200, 255), font=small)


def render_preview(volume: np.ndarray | Volume, point: Any = None, labels: np.ndarray | Volume | None = None,
                   picks: Particles | np.ndarray | None = None, title: str | None = None,
                   pick_radius: float | None = None, config: PreviewConfig = _DEFAULTS) -> RenderedPreview:
    """Draw the orthoview in memory; `save_preview` writes it. Arguments as `save_preview`."""
    from PIL import Image, ImageDraw

    data, vs = _as_volume(volume)
    shape = tuple(int(s) for s in data.shape)
    if min(shape) == 0:
        raise InputError(f"preview needs a non-empty volume, got shape {shape}")
    pt = _check_point(point, shape)
    label_data = None
    if labels is not None:
        label_data = labels.data if isinstance(labels, Volume) else np.asarray(labels)
        if tuple(label_data.shape) != shape:
            raise InputError(f"labels have shape {tuple(label_data.shape)} but the volume has shape {shape} (z, y, x)")
        if not (label_data.dtype == bool or np.issubdtype(label_data.dtype, np.integer)
                or np.issubdtype(label_data.dtype, np.floating)):
            raise InputError(f"labels must be integer ids or a boolean mask, got dtype {label_data.dtype}")
    parts = _as_particles(picks)
    radius = config.pick_radius if pick_radius is None else float(pick_radius)
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"pick radius must be a positive number of voxels, got {pick_radius!r}")

    top = 26 if title else 0
    panels, width, height = _layout(shape, vs, config, top)
    canvas = np.empty((height, width, 3), dtype=np.uint8)
    canvas[:] = _BACKGROUND
    grey = _grey(_planes(data, pt), config.percentiles)
    label_planes = _planes(label_data, pt) if label_data is not None else {}
    for view, panel in panels.items():
        rgb = np.repeat(_resize(grey[view], panel, labels=False)[..., None], 3, axis=2)
        if view in label_planes:
            ids = np.rint(np.nan_to_num(label_planes[view].astype(np.float64))).astype(np.int64)
            rgb = _overlay(rgb, _resize(ids, panel, labels=True), config.overlay_alpha)
        canvas[panel.top:panel.top + panel.height, panel.left:panel.left + panel.width] = rgb

    image = Image.fromarray(canvas).convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    _draw_crosshair(draw, panels, pt)
    if parts is not None and len(parts):
        n = _draw_picks(layer, panels, parts, pt, vs, radius)
        logger.debug("drew %d pick circles", n)
    _draw_text(draw, panels, pt, shape, vs, title, width, config)
    if label_planes:
        shown = np.unique(np.concatenate([np.rint(np.nan_to_num(p.astype(np.float64))).astype(np.int64).ravel()
                                          for p in label_planes.values()]))
        _draw_legend(draw, panels, shown[shown != 0], width)
    image = Image.alpha_composite(image, layer).convert("RGB")
    return RenderedPreview(np.asarray(image), panels, pt)


def save_preview(volume: np.ndarray | Volume, path: str | Path, point: Any = None,
                 labels: np.ndarray | Volume | None = None, picks: Particles | np.ndarray | None = None,
                 title: str | None = None, pick_radius: float | None = None,
                 config: PreviewConfig = _DEFAULTS) -> Path:
    """Write a PNG of the three orthogonal planes through `point`, with labels and picks.

    Args:
        volume: (Z, Y, X) intensities, or a `Volume` (its voxel size sets the panels' aspect).
        path: the .png to write (atomically; never one of the inputs).
        point: (z, y, x) in voxels where the planes cross; default the centre. Rounded to the
            nearest voxel; outside the volume is an error.
        labels: (Z, Y, X) label ids or boolean mask (class or instance), or a `Volume`; every
            non-zero id gets its own translucent colour, listed in a legend beside the info text.
        picks: `Particles` or (N, 3) z, y, x voxel coordinates; drawn as circles on the planes they
            lie near (coloured by class when `picks.classes` is set).
        title: text drawn above the panels.
        pick_radius: circle radius in voxels (default `PreviewConfig.pick_radius`).
        config: layout and colour settings.

    Returns:
        The written path.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UnsupportedFormatError(f"{path}: previews are written as PNG; use a .png file name")
    rendered = render_preview(volume, point=point, labels=labels, picks=picks, title=title,
                              pick_radius=pick_radius, config=config)
    inputs = [v.source for v in (volume, labels) if isinstance(v, Volume) and v.source is not None]
    from PIL import Image

    with atomic_path(path, inputs=inputs) as tmp:
        Image.fromarray(rendered.image).save(tmp, format="PNG")
    logger.debug("wrote preview %s", path)
    return path
