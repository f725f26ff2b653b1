"""Whether particles appear dark or bright in a tomogram (light to import: the settings check it)."""

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
