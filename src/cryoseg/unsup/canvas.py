"""Pre-processing of slices for the attention features: contrast, CLAHE, a light blur, and the square canvas cut
into tiles (by default a 1024 canvas in four 512 tiles, the input size Stable Diffusion v1 was trained at).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError


@dataclass(frozen=True)
class CanvasConfig:
    """How a slice becomes tiles.

    Attributes:
        canvas: side of the square canvas a slice is resized to, in pixels.
        tile: side of a tile; `canvas` must be a multiple of it.
        percentiles: contrast stretch: grey values at these percentiles become 0 and 1.
        clahe_clip: clip limit of CLAHE (skimage's scale, 0..1); 0 turns CLAHE off.
        blur_sigma: Gaussian blur after CLAHE, in canvas pixels (the reference blurs at 1.25).
    """

    canvas: int = 1024
    tile: int = 512
    percentiles: tuple[float, float] = (0.5, 99.5)
    clahe_clip: float = 0.01
    blur_sigma: float = 1.25

    def __post_init__(self) -> None:
        if self.tile < 8 or self.canvas < self.tile or self.canvas % self.tile:
            raise InputError(f"the canvas ({self.canvas}) must be a multiple of the tile ({self.tile}), tile >= 8")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise InputError(f"percentiles must be 0 <= low < high <= 100, got {self.percentiles}")
        if self.clahe_clip < 0 or self.blur_sigma < 0:
            raise InputError("clahe_clip and blur_sigma must be >= 0")

    @property
    def grid(self) -> int:
        """Tiles per canvas side."""
        return self.canvas // self.tile


def stretch(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """(H, W) or (Z, H, W) array -> float32 in [0, 1], the grey values at `percentiles` (over the whole array)
    mapped to 0 and 1 and clipped; a flat array becomes zeros."""
    arr = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(arr, percentiles)
    if hi <= lo:
        return np.zeros_like(arr)
    return np.clip((arr - lo) / (hi - lo), 0.0, 1.0)


def prepare_canvas(image: np.ndarray, config: CanvasConfig = CanvasConfig()) -> np.ndarray:
    """One slice as the feature extractor sees it.

    Args:
        image: (H, W) real slice, any grey range, finite.

    Returns:
        (canvas, canvas) float32 in [0, 1]: contrast-stretched, CLAHE-equalised, blurred and resized.
    """
    from skimage import exposure, transform

    if image.ndim != 2:
        raise InputError(f"a slice must be (H, W), got shape {image.shape}")
    out = stretch(image, config.percentiles)
    out = transform.resize(out, (config.canvas, config.canvas), order=1, anti_aliasing=True)
    if config.clahe_clip > 0 and out.max() > out.min():
        out = exposure.equalize_adapthist(out, clip_limit=config.clahe_clip)
    if config.blur_sigma > 0:
        out = ndimage.gaussian_filter(out, config.blur_sigma)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def cut_tiles(canvas: np.ndarray, tile: int) -> np.ndarray:
    """(C, C) canvas -> (n, tile, tile) tiles in row-major order (n = (C / tile)^2)."""
    g = canvas.shape[0] // tile
    return canvas.reshape(g, tile, g, tile).transpose(0, 2, 1, 3).reshape(g * g, tile, tile)


def join_tiles(tiles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(n, t, t) tiles in row-major order (n a square number) -> their canvas resized to (H, W) float32."""
    from skimage import transform

    n, t = tiles.shape[0], tiles.shape[1]
    g = int(round(np.sqrt(n)))
    if g * g != n:
        raise InputError(f"{n} tiles do not form a square canvas")
    canvas = tiles.reshape(g, g, t, t).transpose(0, 2, 1, 3).reshape(g * t, g * t)
    return transform.resize(canvas, shape, order=1, anti_aliasing=True).astype(np.float32)
