"""Defaults and input/output checks of the attention-affinity sources, without torch.

`FeatureAffinityConfig` (weight-free "filterbank" source) and `DiffusionAttentionConfig` (Stable Diffusion
self-attention) are the one place their defaults are defined; the CLI quotes them from here (or through
`cryoseg.unsup.affinity`) without importing torch or diffusers. `check_tile` is the input contract of
`AffinitySource.affinity`, `check_affinity` its output contract (for consumers such as the spectral step).

This module sits below both `affinity` (the factory) and `diffusion` (which imports torch), so neither imports
the other's heavy parts and there is no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..models.filterbank import FilterBankConfig

# Pixels per affinity-grid cell of the weight-free source: a 512 tile gives a 64 x 64 grid, as SD's latent does.
FEATURE_CELL = 8
# How far outside [0, 1] a pre-processed tile may stray by rounding before it is refused (it is then clipped).
TILE_RANGE_TOLERANCE = 1e-3
# How far an affinity row's sum may be from 1.
ROW_SUM_TOLERANCE = 1e-3
KERNELS = ("cosine", "gaussian")
LAYER_WEIGHTINGS = ("resolution", "equal")


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def _positive_float(value: object, what: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise InputError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return number


@dataclass(frozen=True)
class FeatureAffinityConfig:
    """The weight-free affinity: filter-bank features on a grid of `filterbank.stride`-pixel cells, then a kernel.

    Attributes:
        filterbank: the features (`cryoseg.models.filterbank`), with stride = pixels per grid cell (8: a 512 tile
            gives 64 x 64 cells). Each channel is standardised over the tile's cells by the extractor.
        kernel: "cosine": row-softmax of cosine similarity / temperature; "gaussian": row-softmax of
            -squared distance / (gaussian_scale * median squared distance). Cosine is the default: on tiles of
            simulated tomograms with membranes and particles (cryoseg.synth, 5 and 8 A voxels, SNR 0.5 and 0.1) the
            leading eigenvectors of its affinity separate particles from background markedly better (best single-
            eigenvector AUC 0.99 against 0.85-0.97 for the Gaussian kernel at scales 0.25-1) and membranes as well
            (AUC 0.99-1.00 both). The Gaussian kernel is very peaked on standardised 28-channel features, so its
            graph falls apart into many near-disconnected pieces (many eigenvalues near 1), which the spectral
            step turns into noise maps.
        temperature: cosine temperature. 0.1: on a 192-pixel slice of a simulated tomogram (SNR 0.5, zoom 5.3 to
            the 1024 canvas), 0.05 left most eigenvectors localised on single cells (their aggregated map had AUC
            0.84-0.93 against the truth), 0.1 gave one clean structure map per tile (AUC 0.98-0.99, picked by the
            aggregation) and 0.2 let the aggregation pick a weaker map on one tile of two (AUC 0.33).
        gaussian_scale: the Gaussian kernel's width as a fraction of the tile's median squared feature distance.
        spatial_weight: a small spatial term, logits -= spatial_weight * (squared distance between the cells in
            units of the grid's longer side). It favours nearby cells of the same texture, smoothing the spectral
            maps, while far-apart cells of the same texture stay linked: at 2.0, the farthest cell of identical
            texture (distance^2 = 2 across the diagonal) keeps exp(-4) = 1.8% of a neighbour's weight, more than a
            neighbour whose cosine similarity is 0.25 lower (exp(-0.25 / 0.05) = 0.7%). Measured: within/across
            affinity ratio of membrane cells +8-17%, eigenvector AUCs unchanged or slightly better. 0 turns it off.
    """

    filterbank: FilterBankConfig = field(default_factory=lambda: FilterBankConfig(stride=FEATURE_CELL))
    kernel: str = "cosine"
    temperature: float = 0.1
    gaussian_scale: float = 1.0
    spatial_weight: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.filterbank, FilterBankConfig):
            raise InputError(f"filterbank must be a FilterBankConfig, got {type(self.filterbank).__name__}")
        if self.kernel not in KERNELS:
            raise InputError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        object.__setattr__(self, "temperature", _positive_float(self.temperature, "temperature"))
        object.__setattr__(self, "gaussian_scale", _positive_float(self.gaussian_scale, "gaussian_scale"))
        object.__setattr__(self, "spatial_weight",
                           _positive_float(self.spatial_weight, "spatial_weight", allow_zero=True))

    @property
    def cell(self) -> int:
        """Pixels per grid cell (the filter bank's stride)."""
        return self.filterbank.stride


@dataclass(frozen=True)
class DiffusionAttentionConfig:
    """Defaults of the diffusion affinity (every field goes into the signature).

    Attributes:
        timestep: the noise timestep t, in [1, num_train_timesteps - 1]; None derives it from the voxel size.
        noise_nm: the reference draws t up to int(noise_nm / voxel size in nm); with a voxel size (and no
            `timestep`) t is that bound, clamped to [1, num_train_timesteps - 1]. Coarser voxels get less noise.
        default_timestep: t when neither `timestep` nor a voxel size is given. 50 is the bound for a 1.36 nm voxel
            (68 / 1.36), typical of binned cryo-ET tomograms; it keeps sqrt(alpha_bar_t) = 0.97 of the signal with
            SD's noise schedule, so the UNet sees the image lightly perturbed, as in the reference.
        layer_weighting: "resolution": each caught layer's weight is proportional to its grid's side relative to the
            finest (1, 1/2, 1/4 for the 64, 32 and 16 grids of SD at 512: weights 4/7, 2/7, 1/7 per resolution),
            because coarse maps, once upsampled, blur thin membranes over up to 4 cells, and the fine layers are the
            ones that resolve them; "equal": every caught layer counts the same.
    """

    timestep: int | None = None
    noise_nm: float = 68.0
    default_timestep: int = 50
    layer_weighting: str = "resolution"

    def __post_init__(self) -> None:
        if self.timestep is not None:
            object.__setattr__(self, "timestep", _positive_int(self.timestep, "timestep"))
        object.__setattr__(self, "noise_nm", _positive_float(self.noise_nm, "noise_nm"))
        object.__setattr__(self, "default_timestep", _positive_int(self.default_timestep, "default_timestep"))
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise InputError(f"layer_weighting must be one of {', '.join(LAYER_WEIGHTINGS)}, "
                             f"got {self.layer_weighting!r}")

    def timestep_for(self, voxel_size_nm: float | None, num_train_timesteps: int = 1000) -> int:
        """The timestep used: `timestep`, else int(noise_nm / voxel_size_nm), else `default_timestep`; always
        clamped to [1, num_train_timesteps - 1]."""
        if self.timestep is not None:
            t = self.timestep
        elif voxel_size_nm is not None:
            # the reference's int(), past float rounding (68 / 1.36 is 49.99999...)
            t = int(self.noise_nm / check_voxel_size(voxel_size_nm) + 1e-9)
        else:
            t = self.default_timestep
        return int(min(max(t, 1), num_train_timesteps - 1))


def check_voxel_size(voxel_size_nm: float | None) -> float | None:
    """None, or the voxel size in nm as a positive finite float (else `InputError`)."""
    if voxel_size_nm is None:
        return None
    return _positive_float(voxel_size_nm, "voxel_size_nm")


def check_tile(tile: np.ndarray) -> np.ndarray:
    """The input contract of `AffinitySource.affinity`: a square 2D real array of finite values in [0, 1].

    Args:
        tile: (T, T) pre-processed tile, any real dtype.

    Returns:
        (T, T) float32 C-contiguous copy, clipped to [0, 1] (values within `TILE_RANGE_TOLERANCE` outside it are
        rounding; further out is an `InputError`, since the tile was not pre-processed).
    """
    arr = np.asarray(tile)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
        raise InputError(f"expected a square (T, T) tile with T >= 2, got an array of shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(f"expected a real numeric tile, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError("tile contains NaN or infinite values; clean the slice before pre-processing")
    lo, hi = float(out.min()), float(out.max())
    if lo < -TILE_RANGE_TOLERANCE or hi > 1 + TILE_RANGE_TOLERANCE:
        raise InputError(f"tile values must lie in [0, 1] (pre-processed), got [{lo:.4g}, {hi:.4g}]")
    return np.clip(out, 0.0, 1.0, out=out)


def check_affinity(affinity: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The output contract of `AffinitySource.affinity`, for its consumers.

    Args:
        affinity: (h * w, h * w) array, rows summing to 1, cells row-major over (y, x) of `grid`.
        grid: (h, w).

    Returns:
        the affinity as float32.
    """
    arr = np.asarray(affinity)
    n = int(grid[0]) * int(grid[1])
    if arr.shape != (n, n):
        raise InputError(f"affinity of shape {arr.shape} does not fit a {tuple(grid)} grid (expected {(n, n)})")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)) or float(arr.min()) < 0:
        raise InputError("affinity must be finite and non-negative")
    sums = arr.sum(axis=1, dtype=np.float64)
    if np.abs(sums - 1).max() > ROW_SUM_TOLERANCE:
        raise InputError(f"affinity rows must sum to 1 (worst row sums to {sums[np.abs(sums - 1).argmax()]:.4g})")
    return arr
