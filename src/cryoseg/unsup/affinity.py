"""Attention affinities of image tiles: the input of the spectral step of the unsupervised method.

An affinity source turns a pre-processed (T, T) tile in [0, 1] into an (N, N) row-stochastic matrix over an
(h, w) grid of the tile (N = h * w, cells row-major over (y, x)); row i says how strongly cell i is linked to every
other cell. Two sources:

- `FeatureAffinity` ("filterbank", the offline default): weight-free multi-scale filter-bank features
  (`cryoseg.models.filterbank`) on 8-pixel cells, row-softmax of their cosine similarity plus a small spatial term;
- `DiffusionAttention` ("stable-diffusion-v1-4", "tiny-sd"; `cryoseg.unsup.diffusion`): the self-attention
  probabilities of Stable Diffusion's decoder, as in the reference method.

`affinity_source(name, ...)` builds either after checking everything that can be checked before heavy work:
the name (registry), the packages, the device and precision, and the weights. Importing this module imports
neither torch nor diffusers; `diffusion` is imported only when a diffusion model is asked for.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from ..models.filterbank import FilterBankExtractor
from ..models.registry import DEFAULT_FEATURES, get_spec, model_names, require_backend
from ..models.spec import DIFFUSION, SEGMENTER
from .affinity_config import (
    DiffusionAttentionConfig,
    FeatureAffinityConfig,
    check_affinity,
    check_tile,
    check_voxel_size,
)

if TYPE_CHECKING:  # pragma: no cover
    from .diffusion import DiffusionAttention

logger = logging.getLogger(__name__)

__all__ = ["AffinitySource", "DiffusionAttentionConfig", "FeatureAffinity", "FeatureAffinityConfig",
           "affinity_source", "affinity_source_names", "check_affinity", "check_tile"]

# Bump when FeatureAffinity's computation changes in a way its config does not show; part of the signature.
_FEATURE_AFFINITY_VERSION = 1


@runtime_checkable
class AffinitySource(Protocol):
    """What the unsupervised pipeline needs from an affinity source."""

    name: str  # registry name, e.g. "filterbank", "tiny-sd", "stable-diffusion-v1-4"

    def grid(self, tile_size: int) -> tuple[int, int]:
        """(h, w) of the affinity grid for a (tile_size, tile_size) tile."""
        ...

    def affinity(self, tile: np.ndarray, zoom: float = 1.0) -> np.ndarray:
        """(T, T) float32 tile in [0, 1], already pre-processed -> (h * w, h * w) float32, rows sum to 1, cells
        row-major over (y, x) of `grid(T)`. `zoom`: canvas pixels per slice pixel (how much the pre-processing
        enlarged the slice); a source with scales in pixels multiplies them by it."""
        ...

    def signature(self) -> dict[str, Any]:
        """JSON-able description for the run's report (name, weights path/hash or "built-in", noise step, ...)."""
        ...


def affinity_source_names() -> list[str]:
    """The names `affinity_source` accepts: the weight-free default, then the registered diffusion models."""
    return [DEFAULT_FEATURES, *model_names(DIFFUSION)]


def _row_softmax_(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a float32 (N, N) array, in place. Returns it."""
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class FeatureAffinity:
    """Weight-free affinity: filter-bank features per grid cell and a kernel between cells (an `AffinitySource`).

    Per tile: the filter bank (`FeatureAffinityConfig.filterbank`: Gaussian, LoG, DoG, Hessian and structure-tensor
    responses at 4 scales, 28 channels) is average-pooled to cells of `cell` pixels and each channel standardised
    over the tile's cells; the affinity is the row-softmax of cosine similarity / temperature minus the spatial
    term (see `FeatureAffinityConfig` for the choice of kernel and the numbers behind it). About 0.25 s per 512
    tile on one CPU core.
    """

    name = DEFAULT_FEATURES

    def __init__(self, config: FeatureAffinityConfig | None = None) -> None:
        self.config = config or FeatureAffinityConfig()
        self.extractor = FilterBankExtractor(self.config.filterbank)
        self._zoomed: dict[float, FilterBankExtractor] = {1.0: self.extractor}
        self._spatial: tuple[tuple[int, int], np.ndarray] | None = None  # the last grid's squared distances

    def grid(self, tile_size: int) -> tuple[int, int]:
        """(h, w) = (ceil(T / cell), ceil(T / cell)) for a (T, T) tile: 64 x 64 for 512 with the default 8."""
        if not isinstance(tile_size, (int, np.integer)) or isinstance(tile_size, bool) or tile_size < 2:
            raise InputError(f"tile size must be an integer >= 2, got {tile_size!r}")
        side = -(-int(tile_size) // self.config.cell)
        return side, side

    def signature(self) -> dict[str, Any]:
        """JSON-able description: name, weights ("built-in"), the kernel's parameters and the filter bank's."""
        cfg = asdict(self.config)
        cfg["filterbank"] = self.extractor.signature()
        return {"name": self.name, "source": "filterbank-features", "weights": "built-in",
                "algorithm_version": _FEATURE_AFFINITY_VERSION, "cell": self.config.cell, **cfg}

    def _extractor(self, zoom: float) -> FilterBankExtractor:
        """The filter bank with its scales multiplied by `zoom`, so that it sees the slice's structures at the
        sizes it was designed for (a 200-pixel slice on a 1024 canvas is enlarged 5x: unscaled filters would see
        only pixel noise). The grid (stride) stays in canvas pixels."""
        key = round(float(zoom), 3)
        if key not in self._zoomed:
            base = self.config.filterbank
            self._zoomed[key] = FilterBankExtractor(replace(base, sigmas=tuple(s * key for s in base.sigmas)))
        return self._zoomed[key]

    def features(self, tile: np.ndarray, zoom: float = 1.0) -> np.ndarray:
        """Standardised filter-bank features of a checked tile: (h * w, C) float32, cells row-major over (y, x);
        `zoom` as in `affinity`."""
        fm = self._extractor(zoom).extract(tile[None])
        c = fm.features.shape[1]
        return np.ascontiguousarray(fm.features[0].reshape(c, -1).T)

    def affinity(self, tile: np.ndarray, zoom: float = 1.0) -> np.ndarray:
        """The affinity of one tile.

        Args:
            tile: (T, T) real array in [0, 1] (pre-processed).
            zoom: canvas pixels per slice pixel; the filter scales are multiplied by it (see `_extractor`).

        Returns:
            (h * w, h * w) float32, rows sum to 1, (h, w) = `grid(T)`, cells row-major over (y, x).
        """
        arr = check_tile(tile)
        grid = self.grid(arr.shape[0])
        if not np.isfinite(zoom) or zoom <= 0:
            raise InputError(f"zoom must be a positive number, got {zoom!r}")
        feats = self.features(arr, zoom)
        cfg = self.config
        if cfg.kernel == "cosine":
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            unit = feats / np.maximum(norms, 1e-12)  # a featureless cell (all channels at their mean) links evenly
            logits = unit @ unit.T
            logits *= np.float32(1.0 / cfg.temperature)
        else:
            sq = np.einsum("ij,ij->i", feats, feats)
            logits = feats @ feats.T
            logits *= -2
            logits += sq[:, None]
            logits += sq[None, :]
            np.maximum(logits, 0, out=logits)
            scale = float(np.median(logits)) * cfg.gaussian_scale
            logits *= np.float32(-1.0 / max(scale, 1e-12))
        if cfg.spatial_weight:
            logits -= self._squared_distances(grid) * np.float32(cfg.spatial_weight)
        return _row_softmax_(logits.astype(np.float32, copy=False))

    def _squared_distances(self, grid: tuple[int, int]) -> np.ndarray:
        """(N, N) float32 squared distances between cell centres in units of the grid's longer side (cached for the
        last grid: tiles of a run share one size)."""
        if self._spatial is None or self._spatial[0] != grid:
            h, w = grid
            yy, xx = np.divmod(np.arange(h * w, dtype=np.float32), np.float32(w))
            yy, xx = yy / max(h, w), xx / max(h, w)
            dist = np.square(yy[:, None] - yy[None, :])
            dist += np.square(xx[:, None] - xx[None, :])
            self._spatial = (grid, dist)
        return self._spatial[1]


def affinity_source(
    name: str = DEFAULT_FEATURES,
    *,
    weights: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    voxel_size_nm: float | None = None,
    seed: int = 0,
    config: FeatureAffinityConfig | DiffusionAttentionConfig | None = None,
) -> AffinitySource:
    """The affinity source `name`, checked before any heavy work.

    Args:
        name: "filterbank" (weight-free, the default), "tiny-sd" (built-in random weights, for tests and dry runs)
            or "stable-diffusion-v1-4" (`affinity_source_names()`).
        weights: diffusion models: a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/,
            optionally scheduler/ and tokenizer/) or a hub id found in the hub cache; None looks in the hub cache.
            The weight-free source takes none.
        device: "cpu" (default), "auto", "cuda", "cuda:N" or "mps" (the weight-free source runs on the CPU).
        dtype: "float32" (default), or "fp16"/"bf16" on a GPU.
        voxel_size_nm: the tomogram's voxel size; sets the diffusion timestep (`DiffusionAttentionConfig`).
        seed: the diffusion noise's seed (the same for every tile).
        config: a `FeatureAffinityConfig` (filterbank) or `DiffusionAttentionConfig` (diffusion); None: defaults.

    Raises:
        UnknownModelError: `name` is not registered. InputError: a registered model that is no affinity source, a bad
        device, precision, voxel size, seed or config. MissingDependencyError: torch, transformers or diffusers is not
        installed (one line naming `cryoseg[diffusion]`). WeightsNotFoundError: the weights are not on this machine
        (the message says where it looked and how to get them).
    """
    spec = get_spec(name)
    voxel_size_nm = check_voxel_size(voxel_size_nm)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    if spec.name == DEFAULT_FEATURES:
        if config is not None and not isinstance(config, FeatureAffinityConfig):
            raise InputError(f"affinity source '{name}' takes a FeatureAffinityConfig, got {type(config).__name__}")
        from ..models.loaders import load_feature_extractor

        # the loaders' policy for weight-free backends: weights refused, device and precision checked, then ignored
        load_feature_extractor(spec.name, weights=weights, device=device, dtype=dtype)
        return FeatureAffinity(config)
    if spec.kind != DIFFUSION:
        what = "a promptable segmenter" if spec.kind == SEGMENTER else "a feature extractor"
        raise InputError(f"model '{name}' is {what}, not an affinity source; "
                         f"use one of: {', '.join(affinity_source_names())}")
    if config is not None and not isinstance(config, DiffusionAttentionConfig):
        raise InputError(f"affinity source '{name}' takes a DiffusionAttentionConfig, got {type(config).__name__}")
    return _diffusion_source(spec.name, weights, device, dtype, voxel_size_nm, int(seed), config)


def _diffusion_source(name: str, weights: str | Path | None, device: str, dtype: str, voxel_size_nm: float | None,
                      seed: int, config: DiffusionAttentionConfig | None) -> DiffusionAttention:
    """Packages, device, precision and weights are checked in this order; only then is anything loaded."""
    from ..models.device import parse_device, parse_precision
    from ..models.weights import locate_weights

    spec = get_spec(name)
    parse_device(device)
    parse_precision(dtype)
    require_backend(spec)  # MissingDependencyError naming cryoseg[diffusion]
    from ..models.device import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    location = locate_weights(spec, weights)  # WeightsNotFoundError: where it looked, how to get them
    from .diffusion import load_diffusion_attention

    return load_diffusion_attention(spec.name, location, dev, dt, voxel_size_nm, seed, config)
