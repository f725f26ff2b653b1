"""Laplacian-of-Gaussian blob detection at the particle scale: the classical picking baseline."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.particles import Particles
from .peaks import pick_peaks, robust_zscore
from .polarity import check_polarity, signed_for_bright

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoGConfig:
    """Settings of LoG blob picking; every default lives here.

    Attributes:
        scales: radii tried, as factors of the particle radius (the response is the maximum over them).
        polarity: "dark" (density darker than the background, raw cryo-ET), "bright", or "auto" (from the
            skewness of the low-passed volume; see `estimate_polarity`).
        threshold: smallest robust z-score of the response (median and 1.4826 * MAD over the volume) of a pick.
        nms_radius: picks at least this far apart, in voxels (None: the particle radius).
        top_k: most picks (None: all above the threshold).
        border: no picks closer than this to the volume's faces, in voxels (None: half the radius).
    """

    scales: tuple[float, ...] = (0.8, 1.0, 1.25)
    polarity: str = "auto"
    threshold: float = 4.0
    nms_radius: float | None = None
    top_k: int | None = None
    border: float | None = None

    def __post_init__(self) -> None:
        check_polarity(self.polarity)
        if not self.scales or any(not np.isfinite(s) or s <= 0 for s in self.scales):
            raise InputError(f"LoG scales must be positive factors of the radius, got {self.scales}")
        if self.nms_radius is not None and self.nms_radius <= 0:
            raise InputError(f"nms_radius must be positive, got {self.nms_radius}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be at least 1, got {self.top_k}")


def log_response(volume: np.ndarray, radius: float, scales: tuple[float, ...] = LoGConfig.scales) -> np.ndarray:
    """Scale-normalised negative LoG, maximum over scales: high at the centres of bright blobs of `radius`.

    Args:
        volume: (Z, Y, X) float array with particles bright.
        radius: blob radius in voxels; a ball of radius r responds most at sigma = r / sqrt(3).

    Returns:
        (Z, Y, X) float32.
    """
    out = None
    for factor in scales:
        sigma = factor * radius / np.sqrt(3.0)
        resp = ndimage.gaussian_laplace(volume, sigma, output=np.float32)
        resp *= -(sigma**2)
        out = resp if out is None else np.maximum(out, resp, out=out)
    return out


def log_blobs(volume: np.ndarray, radius: float, config: LoGConfig | None = None) -> Particles:
    """Pick blobs of about `radius` voxels.

    Args:
        volume: (Z, Y, X) tomogram.
        radius: particle radius in voxels.
        config: settings (default `LoGConfig()`).

    Returns:
        `Particles` with coords (K, 3) z, y, x voxels and scores (robust z-score of the response), best first.
    """
    config = config or LoGConfig()
    volume = np.asarray(getattr(volume, "data", volume))
    if volume.ndim != 3:
        raise InputError(f"expected a 3D volume (Z, Y, X), got shape {volume.shape}")
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"particle radius must be a positive number of voxels, got {radius}")
    data, polarity = signed_for_bright(volume, config.polarity, radius)
    response = log_response(data, radius, config.scales)
    del data
    median, spread = robust_zscore(response)
    response -= median
    response /= spread
    nms_radius = config.nms_radius or radius
    border = 0.5 * radius if config.border is None else config.border
    points, scores = pick_peaks(response, nms_radius, config.threshold, config.top_k, border)
    logger.info("LoG (%s blobs, radius %.1f): %d picks", polarity, radius, len(points))
    return Particles(points, scores=scores)
