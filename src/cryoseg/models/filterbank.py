"""A weight-free, multi-scale filter-bank feature extractor (the offline default `"filterbank"`).

This is a classical baseline, not a learned representation. At every scale sigma it computes, per slice:

* ``gaussian``   Gaussian-smoothed intensity (1 channel);
* ``log``        Laplacian of Gaussian (1 channel; blob detector, strongest for blobs of radius ~ sigma * sqrt(2));
* ``dog``        difference of Gaussians G(sigma) - G(dog_ratio * sigma) (1 channel);
* ``hessian``    the two Hessian eigenvalues, sorted ascending (2 channels; blob / ridge / sheet shape);
* ``structure``  the two structure-tensor eigenvalues, sorted descending (2 channels; edge strength and
  orientation coherence), with derivative scale sigma / 2 and integration scale sigma.

The input is normalised robustly per image (percentile clip, then zero mean and unit variance) so
tomograms of any range or offset give comparable features. Filters run on the whole (B, H, W) stack at
once with sigma 0 along the batch axis. Every channel is average-pooled to patch resolution (`stride`)
and then standardised per image (zero mean, unit variance over the cells), so that a batch gives
exactly the same features as one image at a time, and cosine similarity is not dominated by one channel.

The feature grid covers the whole image with ceil division: h = ceil(H / stride). The last row/column
of cells may be partial; each cell is the mean over the pixels it actually covers (no padding values
enter the average), which matches `FeatureMap`'s cell definition clipped to the image. Scales
sigma >= 4 are computed on a 2x or 4x average-pooled pyramid level (a power of two dividing the stride),
which is much faster and changes the result only slightly (partial edge cells are then weighted by the
level's cells rather than exactly by pixel).

Per-image standardisation also means a slice holding only noise is scaled up to unit variance like any
other; the matching step's similarity threshold has to account for that.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from .base import FeatureExtractor, FeatureMap

logger = logging.getLogger(__name__)

FEATURE_KINDS = ("gaussian", "log", "dog", "hessian", "structure")
_CHANNELS_PER_KIND = {"gaussian": 1, "log": 1, "dog": 1, "hessian": 2, "structure": 2}
# Bump when the computation changes in a way the config does not show; it is part of the signature.
_ALGORITHM_VERSION = 1


def robust_normalize(images: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip each image to its own percentiles, then scale it to zero mean and unit variance.

    Args:
        images: (B, H, W) or (H, W) real array, any range.
        percentiles: (low, high) clip percentiles in [0, 100].

    Returns:
        float32 array of the same shape. A constant image becomes all zeros.
    """
    arr = np.asarray(images)
    if arr.ndim not in (2, 3):
        raise InputError(f"expected images of shape (B, H, W) or (H, W), got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"expected a real numeric image array, got dtype {arr.dtype}")
    squeeze = arr.ndim == 2
    stack = arr[None] if squeeze else arr
    stack = stack.astype(np.float32, copy=True)
    if not np.all(np.isfinite(stack)):
        raise InputError("image contains NaN or infinite values; clean the volume first (nan_policy='clean')")
    lo, hi = np.percentile(stack, percentiles, axis=(1, 2))
    np.clip(stack, lo[:, None, None], hi[:, None, None], out=stack)
    mean = stack.mean(axis=(1, 2), keepdims=True)
    std = stack.std(axis=(1, 2), keepdims=True)
    std[std == 0] = 1.0  # a flat image carries no information; map it to zeros, not NaN
    stack -= mean
    stack /= std
    return stack[0] if squeeze else stack


def average_pool(stack: np.ndarray, stride: int) -> np.ndarray:
    """Mean over non-overlapping stride x stride cells, ceil division, partial edge cells averaged over real pixels.

    Args:
        stack: (B, H, W) float array.
        stride: cell size in pixels.

    Returns:
        (B, ceil(H / stride), ceil(W / stride)) float32.
    """
    b, H, W = stack.shape
    h, w = -(-H // stride), -(-W // stride)
    if stride == 1:
        return stack.astype(np.float32, copy=False)
    padded = np.zeros((b, h * stride, w * stride), np.float32)
    padded[:, :H, :W] = stack
    sums = padded.reshape(b, h, stride, w, stride).sum(axis=(2, 4))
    # Pixel counts per cell: full cells hold stride**2, the last row/column fewer.
    rows = np.minimum(stride, H - np.arange(h) * stride)
    cols = np.minimum(stride, W - np.arange(w) * stride)
    return (sums / np.outer(rows, cols)[None]).astype(np.float32)


def _sym2_eigenvalues(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (small, large) of the symmetric 2x2 matrices [[a, b], [b, c]], elementwise."""
    half_trace = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b**2)
    return half_trace - root, half_trace + root


def _level_factor(sigma: float, stride: int) -> int:
    """Largest power of two d dividing `stride` with sigma / d >= 2 (1 when none)."""
    d = 1
    while stride % (2 * d) == 0 and sigma / (2 * d) >= 2:
        d *= 2
    return d


@dataclass(frozen=True)
class FilterBankConfig:
    """Parameters of the filter bank; every one of them is part of the signature.

    Attributes:
        sigmas: Gaussian scales in pixels.
        stride: output cell size in pixels (average pooling).
        features: which feature kinds to compute, a subset of FEATURE_KINDS, in output order.
        dog_ratio: the DoG's second scale is dog_ratio * sigma.
        clip_percentiles: robust normalisation percentiles applied to each input image.
        truncate: Gaussian kernels are cut at truncate * sigma.
    """

    sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    stride: int = 4
    features: tuple[str, ...] = FEATURE_KINDS
    dog_ratio: float = 1.6
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    truncate: float = 3.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigmas", tuple(float(s) for s in self.sigmas))
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        object.__setattr__(self, "clip_percentiles", tuple(float(p) for p in self.clip_percentiles))
        if not self.sigmas or any(not np.isfinite(s) or s <= 0 for s in self.sigmas):
            raise InputError(f"filter bank sigmas must be positive numbers, got {self.sigmas}")
        if int(self.stride) != self.stride or self.stride < 1:
            raise InputError(f"filter bank stride must be a positive integer, got {self.stride}")
        object.__setattr__(self, "stride", int(self.stride))
        unknown = [f for f in self.features if f not in FEATURE_KINDS]
        if unknown or not self.features or len(set(self.features)) != len(self.features):
            raise InputError(
                f"filter bank features must be distinct names from {FEATURE_KINDS}, got {self.features}"
            )
        if self.dog_ratio <= 1:
            raise InputError(f"filter bank dog_ratio must be > 1, got {self.dog_ratio}")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise InputError(f"clip_percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles}")
        if self.truncate <= 0:
            raise InputError(f"filter bank truncate must be positive, got {self.truncate}")

    @property
    def n_channels(self) -> int:
        return len(self.sigmas) * sum(_CHANNELS_PER_KIND[f] for f in self.features)

    def channel_names(self) -> list[str]:
        """One name per output channel, e.g. 'hessian0@s2' (in output order)."""
        names = []
        for s in self.sigmas:
            for f in self.features:
                n = _CHANNELS_PER_KIND[f]
                names += [f"{f}@s{s:g}"] if n == 1 else [f"{f}{k}@s{s:g}" for k in range(n)]
        return names


def _gauss(source: np.ndarray, sigma: float, order: tuple[int, int], truncate: float) -> np.ndarray:
    """Gaussian (derivative) filter of a (B, H, W) stack; sigma 0 along the batch axis keeps images independent."""
    return ndimage.gaussian_filter(source, (0, sigma, sigma), order=(0, *order), mode="reflect", truncate=truncate)


def _scale_features(src: np.ndarray, sigma: float, pool: int, cfg: FilterBankConfig) -> list[np.ndarray]:
    """The configured features of one scale, pooled.

    Args:
        src: (B, h0, w0) normalised images (possibly a pyramid level).
        sigma: scale in `src` pixels.
        pool: pooling factor from `src` pixels to output cells.

    Returns:
        list of (B, h, w) float32 channels in `cfg.channel_names()` order for this scale.
    """
    derivs: dict[tuple[int, int], np.ndarray] = {}

    def deriv(order: tuple[int, int]) -> np.ndarray:
        # Each Gaussian derivative is computed once and shared between kinds (LoG and Hessian).
        if order not in derivs:
            derivs[order] = _gauss(src, sigma, order, cfg.truncate)
        return derivs[order]

    out: list[np.ndarray] = []
    for kind in cfg.features:
        if kind == "gaussian":
            out.append(average_pool(deriv((0, 0)), pool))
        elif kind == "dog":
            out.append(average_pool(deriv((0, 0)) - _gauss(src, cfg.dog_ratio * sigma, (0, 0), cfg.truncate), pool))
        elif kind == "log":
            # Scale-normalised (sigma^2) so responses are comparable across scales.
            out.append(average_pool(sigma**2 * (deriv((2, 0)) + deriv((0, 2))), pool))
        elif kind == "hessian":
            hyy, hxx, hxy = (sigma**2 * deriv(o) for o in ((2, 0), (0, 2), (1, 1)))
            small, large = _sym2_eigenvalues(hyy, hxy, hxx)
            out += [average_pool(small, pool), average_pool(large, pool)]
        elif kind == "structure":
            sd = sigma / 2  # derivative (inner) scale; the integration (outer) scale is sigma
            gy, gx = sd * _gauss(src, sd, (1, 0), cfg.truncate), sd * _gauss(src, sd, (0, 1), cfg.truncate)
            jyy, jxx, jxy = (_gauss(p, sigma, (0, 0), cfg.truncate) for p in (gy * gy, gx * gx, gy * gx))
            small, large = _sym2_eigenvalues(jyy, jxy, jxx)
            out += [average_pool(large, pool), average_pool(small, pool)]
    return out


class FilterBankExtractor(FeatureExtractor):
    """Multi-scale Gaussian / LoG / DoG / Hessian / structure-tensor features at patch resolution (a baseline)."""

    name = "filterbank"

    def __init__(self, config: FilterBankConfig | None = None) -> None:
        self.config = config or FilterBankConfig()

    def signature(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        return {"name": self.name, "algorithm_version": _ALGORITHM_VERSION, "weights": None,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}}

    def extract(self, images: np.ndarray) -> FeatureMap:
        """Compute features of a batch.

        Args:
            images: (B, H, W) real array, any range (a single (H, W) image is not accepted; add the axis).

        Returns:
            FeatureMap with features (B, C, ceil(H / stride), ceil(W / stride)) float32, C = config.n_channels
            in the order of `config.channel_names()`, stride (stride, stride), patch_size = stride.
        """
        arr = np.asarray(images)
        if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] < 2 or arr.shape[2] < 2:
            raise InputError(f"filter bank expects images of shape (B, H, W) with B >= 1 and H, W >= 2, "
                             f"got {arr.shape}")
        cfg = self.config
        stack = robust_normalize(arr, cfg.clip_percentiles)
        levels: dict[int, np.ndarray] = {1: stack}
        pooled: list[np.ndarray] = []
        for s in cfg.sigmas:
            # Coarse scales are computed on a 2x/4x.. average-pooled copy (a pyramid level d dividing the
            # stride, with s / d >= 2 so the smallest filter used, at s / 2, stays >= 1 pixel there).
            d = _level_factor(s, cfg.stride)
            if d not in levels:
                levels[d] = average_pool(stack, d)
            pooled += _scale_features(levels[d], s / d, cfg.stride // d, cfg)
        feats = np.stack(pooled, axis=1)  # (B, C, h, w)
        # Standardise per image and channel over the cells, so batching never changes the result.
        mean = feats.mean(axis=(2, 3), keepdims=True)
        std = feats.std(axis=(2, 3), keepdims=True)
        std[std < 1e-6] = 1.0
        feats = ((feats - mean) / std).astype(np.float32)
        return FeatureMap(features=feats, stride=(float(cfg.stride), float(cfg.stride)),
                          image_shape=(int(arr.shape[1]), int(arr.shape[2])), patch_size=cfg.stride)
