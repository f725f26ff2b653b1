"""Whether particles appear dark or bright in a tomogram, or at given particles (light to import: the settings
check it)."""

from __future__ import annotations

import numpy as np

from .errors import InputError

POLARITIES = ("auto", "dark", "bright")


def check_polarity(polarity: str) -> str:
    if polarity not in POLARITIES:
        raise InputError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    return polarity


def estimate_polarity(volume: np.ndarray, radius: float) -> str:
    """"dark" or "bright": the sign of the skewness of the volume low-passed at the particle scale.

    Particles are compact and dense and fill a minority of the volume, so after smoothing away the noise
    they form the long tail of the intensity distribution: on the low side when density is dark (raw
    cryo-ET contrast), on the high side when it is bright (inverted maps).

    Args:
        volume: (Z, Y, X) array.
        radius: particle radius in voxels.
    """
    from scipy import ndimage

    step = max(1, int(radius // 3))  # subsample: the low-passed volume varies slowly at this step
    sample = np.asarray(volume[::step, ::step, ::step], dtype=np.float32)
    smooth = ndimage.gaussian_filter(sample, max(0.5, radius / (2 * step)))
    centred = smooth - smooth.mean()
    skew = float(np.mean(centred.astype(np.float64) ** 3)) / max(float(centred.std()) ** 3, 1e-30)
    return "dark" if skew < 0 else "bright"


def polarity_at(volume: np.ndarray, centres: np.ndarray, radius: float) -> str:
    """"dark" or "bright": how the prompted particles stand out from the tomogram's mean.

    Args:
        volume: (Z, Y, X) low-passed tomogram.
        centres: (P, 3) z, y, x voxels of the prompted particles.
        radius: their radius in voxels (the core within half of it is sampled).
    """
    h = max(1, int(radius // 2))
    inside = [volume[tuple(slice(max(0, int(round(c)) - h), int(round(c)) + h + 1) for c in centre)].mean()
              for centre in np.asarray(centres).reshape(-1, 3)]
    step = max(1, int(radius // 2))
    return "dark" if float(np.mean(inside)) < float(volume[::step, ::step, ::step].mean()) else "bright"
