"""Adaptive thresholding of structure maps: a pixel is foreground where it is brighter than its Gaussian-weighted
neighbourhood, so thin structures are found on top of slow brightness changes that defeat a global threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_local

from ..errors import InputError

# Gaussian kernels reach this many sigmas (scipy's and skimage's default truncate).
TRUNCATE = 4.0


@dataclass(frozen=True)
class ThresholdConfig:
    """Settings of the adaptive threshold; every default lives here.

    Attributes:
        blur_sigma: Gaussian blur before thresholding, in pixels (0: none); the reference blurs at 1.5.
        block_size: side of the neighbourhood of the local threshold, odd, >= 3; the Gaussian weights have
            sigma = (block_size - 1) / 6 (skimage's choice: the block holds 99.7 % of the weight).
        offset: a pixel is foreground where it exceeds its local mean by more than this, in map units (maps are
            in [0, 1]); the reference's C = 3 on its 0..255 scale is 3 / 255.
    """

    blur_sigma: float = 1.5
    block_size: int = 15
    offset: float = 3.0 / 255.0

    def __post_init__(self) -> None:
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, (int, np.integer)):
            raise InputError(f"block_size must be an odd integer >= 3, got {self.block_size!r}")
        if self.block_size < 3 or self.block_size % 2 == 0:
            raise InputError(f"block_size must be an odd integer >= 3, got {self.block_size}")
        if not np.isfinite(self.blur_sigma) or self.blur_sigma < 0:
            raise InputError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if not np.isfinite(self.offset):
            raise InputError(f"offset must be finite, got {self.offset}")


def adaptive_threshold(m: np.ndarray, config: ThresholdConfig | None = None) -> np.ndarray:
    """Foreground of a structure map by a local Gaussian-weighted threshold.

    The map is blurred (`blur_sigma`), then a pixel is foreground where the blurred map exceeds its
    Gaussian-weighted local mean (`skimage.filters.threshold_local`, method "gaussian") by more than `offset`.
    Borders: the map is first extended by point reflection (numpy's odd reflect: 2 * edge - mirror), which
    continues any linear trend, so a smooth ramp has no foreground at the borders either. scipy's "reflect" and
    "nearest" modes bend the ramp at its bright end (the mean there falls below the pixel) and mark a false
    band along that border.

    Args:
        m: (H, W) float map in [0, 1], structure high; finite.
        config: settings (default `ThresholdConfig()`).

    Returns:
        (H, W) bool foreground.
    """
    config = config or ThresholdConfig()
    m = np.asarray(m)
    if m.ndim != 2 or min(m.shape) < 1:
        raise InputError(f"a map must be (H, W), got shape {m.shape}")
    if m.dtype.kind not in "biuf" or not np.isfinite(m).all():
        raise InputError("a map must be real and finite")
    local_sigma = (config.block_size - 1) / 6.0
    # Both filters read this far beyond a pixel; pixels that far past the map's edge are cut off again.
    pad = int(TRUNCATE * config.blur_sigma + 0.5) + int(TRUNCATE * local_sigma + 0.5) + 1
    padded = np.pad(m.astype(np.float64), pad, mode="reflect", reflect_type="odd")
    if config.blur_sigma > 0:
        padded = ndimage.gaussian_filter(padded, config.blur_sigma, truncate=TRUNCATE)
    local = threshold_local(padded, config.block_size, method="gaussian", mode="reflect")
    inner = (slice(pad, -pad),) * 2
    return padded[inner] > local[inner] + config.offset
