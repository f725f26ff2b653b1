"""Laplacian-of-Gaussian blob detection at the particle scale: the classical picking baseline."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.particles import Particles
from ..polarity import check_polarity, estimate_polarity
from .peaks import local_peaks, peak_size, robust_stats, select_peaks

logger = logging.getLogger(__name__)

SLAB_VOXELS = 1 << 25  # voxels per slab of the response (128 MB as float32)
ROBUST_STEP = 2  # the response's statistics come from every 2nd voxel along each axis


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


def log_blobs(volume: np.ndarray, radius: float, config: LoGConfig | None = None,
              slab_voxels: int = SLAB_VOXELS) -> Particles:
    """Pick blobs of about `radius` voxels.

    The response is computed in z-slabs of about `slab_voxels` voxels (with a margin the filters cannot see past),
    so a tomogram larger than memory is read slab by slab and never held as float32 whole; the result is the
    same as for one slab.

    Args:
        volume: (Z, Y, X) tomogram (an array or a memory-mapped file).
        radius: particle radius in voxels.
        config: settings (default `LoGConfig()`).
        slab_voxels: voxels per slab, margins included (at least 8 planes besides the margins).

    Returns:
        `Particles` with coords (K, 3) z, y, x voxels and scores (robust z-score of the response), best first.
    """
    config = config or LoGConfig()
    volume = np.asarray(getattr(volume, "data", volume))  # a Volume's array; a memory map stays one (no copy)
    if volume.ndim != 3:
        raise InputError(f"expected a 3D volume (Z, Y, X), got shape {volume.shape}")
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(f"particle radius must be a positive number of voxels, got {radius}")
    polarity = check_polarity(config.polarity)
    if polarity == "auto":
        polarity = estimate_polarity(volume, radius)
    sign = np.float32(-1.0 if polarity == "dark" else 1.0)
    nms_radius = config.nms_radius or radius
    sigma = max(config.scales) * radius / np.sqrt(3.0)
    margin = int(4.0 * sigma + 0.5) + peak_size(nms_radius) // 2 + 1  # scipy truncates Gaussians at 4 sigma
    depth, plane = volume.shape[0], int(np.prod(volume.shape[1:]))
    thickness = max(8, slab_voxels // max(plane, 1) - 2 * margin)  # a slab with its margins: about slab_voxels
    samples, points, values = [], [], []
    for z0 in range(0, depth, thickness):
        z1 = min(depth, z0 + thickness)
        lo, hi = max(0, z0 - margin), min(depth, z1 + margin)
        response = log_response(sign * np.asarray(volume[lo:hi], dtype=np.float32), radius, config.scales)
        core = slice(z0 - lo, z1 - lo)
        first = (-z0) % ROBUST_STEP  # the strided sample of the whole volume, whatever the slab
        samples.append(response[core][first::ROBUST_STEP, ::ROBUST_STEP, ::ROBUST_STEP].ravel())
        found, found_values = local_peaks(response, nms_radius)
        inside = (found[:, 0] >= z0 - lo) & (found[:, 0] < z1 - lo)
        points.append(found[inside] + [lo, 0, 0])
        values.append(found_values[inside])
        del response
    median, spread = robust_stats(np.concatenate(samples))
    scores = (np.concatenate(values) - median) / spread
    border = 0.5 * radius if config.border is None else config.border
    coords, scores = select_peaks(np.concatenate(points), scores, volume.shape, nms_radius, config.threshold,
                                  config.top_k, border)
    logger.info("LoG (%s blobs, radius %.1f): %d picks", polarity, radius, len(coords))
    return Particles(coords, scores=scores)
