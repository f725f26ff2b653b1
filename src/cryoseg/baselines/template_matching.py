"""Template matching by FFT-based locally normalised cross-correlation over rotations (as pytom / EMAN2 do).

For every rotation of the template on a uniform angular grid, the locally normalised cross-correlation
(Roseman's FLCF) with the tomogram is computed by FFT: the rotated template is normalised to zero mean
and unit variance under a spherical mask, and each position's correlation is divided by the standard
deviation of the tomogram under that mask (local mean and variance also by FFT). The score map is the
maximum over rotations (with the best rotation kept); picks are its peaks, thinned by NMS.

The tomogram is processed in slabs along z with a halo of one template size, so memory is bounded by the
slab's FFT size, not the tomogram's. Positions refer to the template's centre of mass (its rotation centre).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..io.particles import Particles
from ..polarity import check_polarity, estimate_polarity
from ..progress import track
from ..synth.rotation import matrices_to_euler, rotate_into_box
from .peaks import pick_peaks, robust_zscore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TemplateMatchingConfig:
    """Settings of template matching; every default lives here.

    Attributes:
        angular_step: angular sampling in degrees (directions about `step` apart on the sphere, and
            in-plane rotations every `step`).
        polarity: how particle density appears in the tomogram: "dark" (raw cryo-ET; the template is
            negated), "bright", or "auto" (see `estimate_polarity`).
        mask_radius: radius of the spherical correlation mask in voxels (None: the template's radius).
        threshold: smallest robust z-score (median, 1.4826 * MAD of the score map) of a pick. The map's
            upper tail holds other particle kinds too, so no value suits every template: 8 keeps the picks of
            a large template on simulated 128^3 tomograms (F1 1.0 for the ribosome at 30-45 degrees) but
            lets in look-alikes for small ones (they need 10-12); rank by score where that matters.
        nms_radius: picks at least this far apart, voxels (None: 0.8 times the mask radius).
        top_k: most picks (None: all above the threshold).
        slab: output z planes per FFT slab (bounds memory: about 16 * (slab + T) * (Y + T) * (X + T) bytes
            for a template of edge T).
        workers: FFT threads (None: all cores this process may use).
    """

    angular_step: float = 30.0
    polarity: str = "auto"
    mask_radius: float | None = None
    threshold: float = 8.0
    nms_radius: float | None = None
    top_k: int | None = None
    slab: int = 64
    workers: int | None = None

    def __post_init__(self) -> None:
        check_polarity(self.polarity)
        if not 1.0 <= self.angular_step <= 360.0:
            raise InputError(f"angular_step must lie in [1, 360] degrees, got {self.angular_step}")
        if self.mask_radius is not None and self.mask_radius <= 1:
            raise InputError(f"mask_radius must exceed 1 voxel, got {self.mask_radius}")
        if self.nms_radius is not None and self.nms_radius <= 0:
            raise InputError(f"nms_radius must be positive, got {self.nms_radius}")
        if self.slab < 1:
            raise InputError(f"slab must be at least 1 z plane, got {self.slab}")
        if self.top_k is not None and self.top_k < 1:
            raise InputError(f"top_k must be at least 1, got {self.top_k}")


@dataclass
class ScoreMaps:
    """Dense template-matching output.

    Attributes:
        scores: (Z, Y, X) float32 maximum over rotations of the normalised cross-correlation.
        rotation_index: (Z, Y, X) int32 index into `rotations` of the best rotation.
        rotations: (R, 3, 3) template-to-particle rotations acting on x, y, z vectors.
        polarity: "dark" or "bright", as used.
    """

    scores: np.ndarray
    rotation_index: np.ndarray
    rotations: np.ndarray
    polarity: str


def rotation_set(angular_step: float) -> np.ndarray:
    """Rotations sampling SO(3) about every `angular_step` degrees.

    The template's z axis is sent to directions spread evenly on the sphere (a Fibonacci lattice with one
    point per step^2 steradians), each combined with in-plane rotations every `angular_step` degrees.

    Returns:
        (R, 3, 3) rotation matrices acting on x, y, z vectors; the identity first.
    """
    step = np.deg2rad(angular_step)
    n_dir = max(1, int(np.ceil(4 * np.pi / step**2)))
    k = np.arange(n_dir) + 0.5
    tilt = np.arccos(1 - 2 * k / n_dir) if n_dir > 1 else np.zeros(1)
    rot = np.mod(np.pi * (1 + 5**0.5) * k, 2 * np.pi) if n_dir > 1 else np.zeros(1)
    n_psi = max(1, int(np.ceil(360.0 / angular_step - 1e-9)))
    psi = np.arange(n_psi) * 2 * np.pi / n_psi
    angles = np.array([(r, t, p) for r, t in zip(rot, tilt) for p in psi])
    mats = Rotation.from_euler("ZYZ", angles).as_matrix()
    # Put the identity first so an unrotated template is always tried exactly.
    return np.concatenate([np.eye(3)[None], mats], axis=0)


def _sphere(size: int, radius: float) -> np.ndarray:
    c = size // 2
    zz, yy, xx = np.ogrid[:size, :size, :size]
    return ((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 <= radius**2).astype(np.float32)


def _template_geometry(template: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre of mass (z, y, x) of the positive density and the radius that holds it."""
    weights = np.clip(template, 0, None)
    if weights.sum() <= 0:
        raise InputError("the template has no positive density (is it inverted? pass the density map itself)")
    grid = np.indices(template.shape).reshape(3, -1).T.astype(np.float64)
    center = (grid * weights.reshape(-1, 1)).sum(axis=0) / weights.sum()
    support = weights.reshape(-1) > 0.05 * weights.max()
    radius = float(np.linalg.norm(grid[support] - center, axis=1).max()) + 0.5
    return center, radius


def match_template_maps(volume: np.ndarray, template: np.ndarray,
                        config: TemplateMatchingConfig | None = None) -> ScoreMaps:
    """The dense score map: FFT normalised cross-correlation, maximum over rotations.

    Args:
        volume: (Z, Y, X) tomogram.
        template: (z, y, x) density map of the particle at the tomogram's voxel size, protein positive.
        config: settings (default `TemplateMatchingConfig()`).
    """
    config = config or TemplateMatchingConfig()
    volume = np.asarray(getattr(volume, "data", volume))
    template = np.asarray(getattr(template, "data", template), dtype=np.float32)
    if volume.ndim != 3 or template.ndim != 3:
        raise InputError(f"volume and template must be 3D (z, y, x); got shapes {volume.shape} and {template.shape}")
    if not np.all(np.isfinite(template)):
        raise InputError("the template contains NaN or infinite values")
    center, radius = _template_geometry(template)
    mask_radius = config.mask_radius or radius
    size = 2 * int(np.ceil(mask_radius)) + 3
    if any(size > s + size // 2 for s in volume.shape):
        raise InputError(f"template of radius {mask_radius:.1f} voxels is larger than the volume {volume.shape}")
    polarity = config.polarity
    if polarity == "auto":
        polarity = estimate_polarity(volume, 0.5 * radius)
    sign = -1.0 if polarity == "dark" else 1.0

    mask = _sphere(size, mask_radius)
    n_mask = float(mask.sum())
    rotations = rotation_set(config.angular_step)
    kernels = _normalised_templates(template, center, rotations, mask, size, sign)
    Z, Y, X = volume.shape
    scores = np.full(volume.shape, -np.inf, np.float32)
    best = np.zeros(volume.shape, np.int32)
    workers = config.workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None)
    half = size // 2
    # Standardise globally first: local variances come from float32 FFTs and must not cancel on an offset.
    offset, scale = float(np.mean(volume, dtype=np.float64)), float(np.std(volume, dtype=np.float64)) or 1.0
    plane = (sfft.next_fast_len(Y + size - 1, real=True), sfft.next_fast_len(X + size - 1, real=True))
    slabs = list(range(0, Z, config.slab))
    logger.info("template matching: %d rotations, mask radius %.1f, %s density, %d slab(s)", len(rotations),
                mask_radius, polarity, len(slabs))
    for z0 in track(slabs, "template matching", total=len(slabs)):
        z1 = min(Z, z0 + config.slab)
        # The block holds the slab with `half` zero-padded planes before and `size - half - 1` after along
        # every axis, so output index k of the correlation is the placement centred at voxel (z0, 0, 0) + k.
        lo, hi = z0 - half, z1 + size - half - 1
        block = np.zeros((hi - lo, Y + size - 1, X + size - 1), np.float32)
        block[max(0, -lo):(hi - lo) - max(0, hi - Z), half:half + Y, half:half + X] = (
            volume[max(0, lo):min(Z, hi)] - offset) / scale
        shape = (sfft.next_fast_len(block.shape[0], real=True), *plane)
        vf = sfft.rfftn(block, shape, workers=workers)
        v2f = sfft.rfftn(block * block, shape, workers=workers)
        mf = np.conj(sfft.rfftn(mask, shape, workers=workers))
        region = (slice(0, z1 - z0), slice(0, Y), slice(0, X))
        mean = sfft.irfftn(vf * mf, shape, workers=workers)[region] / n_mask
        var = sfft.irfftn(v2f * mf, shape, workers=workers)[region] / n_mask - mean**2
        del v2f, mf
        denom = (n_mask * np.sqrt(np.maximum(var, 1e-12 * max(float(var.max()), 1e-30)))).astype(np.float32)
        flat = np.maximum(var, 0) <= 1e-12 * max(float(var.max()), 1e-30)  # constant input: no correlation
        out_s, out_i = scores[z0:z1], best[z0:z1]
        for r, kernel in enumerate(kernels):
            cc = sfft.irfftn(vf * np.conj(sfft.rfftn(kernel, shape, workers=workers)), shape,
                             workers=workers)[region].astype(np.float32)
            cc /= denom
            cc[flat] = 0.0
            better = cc > out_s
            out_s[better] = cc[better]
            out_i[better] = r
    return ScoreMaps(scores, best, rotations, polarity)


def _normalised_templates(template: np.ndarray, center: np.ndarray, rotations: np.ndarray, mask: np.ndarray,
                          size: int, sign: float) -> list[np.ndarray]:
    """Each rotated template in a `size` cube centred at index size // 2, zero-mean and unit-variance under
    `mask`, times `sign`."""
    n = float(mask.sum())
    out = []
    for rot in rotations:
        t = rotate_into_box((template,), center, rot, np.zeros(3), size)[0] * mask
        mean = float(t.sum()) / n
        t = (t - mean) * mask
        norm = float(np.sqrt((t * t).sum() / n))
        if norm <= 0:
            raise InputError("the template is constant under its mask; nothing to correlate")
        out.append((sign * t / norm).astype(np.float32))
    return out


def template_match(volume: np.ndarray, template: np.ndarray,
                   config: TemplateMatchingConfig | None = None) -> Particles:
    """Pick particles by template matching.

    Args:
        volume: (Z, Y, X) tomogram (array or `Volume`).
        template: (z, y, x) density map of the particle at the tomogram's voxel size (array or `Volume`),
            protein positive.
        config: settings (default `TemplateMatchingConfig()`).

    Returns:
        `Particles`: coords (K, 3) z, y, x voxels of the template's centre of mass, scores (robust z-score
        of the correlation), orientations (RELION rot, tilt, psi degrees of the best rotation), best first.
    """
    config = config or TemplateMatchingConfig()
    maps = match_template_maps(volume, template, config)
    _, radius = _template_geometry(np.asarray(getattr(template, "data", template), dtype=np.float32))
    mask_radius = config.mask_radius or radius
    median, spread = robust_zscore(maps.scores)
    z = (maps.scores - median) / spread
    nms_radius = config.nms_radius or 0.8 * mask_radius
    points, scores = pick_peaks(z, nms_radius, config.threshold, config.top_k)
    idx = maps.rotation_index[tuple(points.astype(int).T)] if len(points) else np.zeros(0, int)
    angles = matrices_to_euler(maps.rotations[idx]) if len(points) else np.zeros((0, 3))
    logger.info("template matching: %d picks", len(points))
    return Particles(points, scores=scores, orientations=angles)
