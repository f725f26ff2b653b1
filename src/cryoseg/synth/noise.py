"""Gaussian noise at a chosen signal-to-noise ratio.

SNR = variance of the noiseless images / variance of the noise, with the signal variance measured over
every tilt image where the volume projects (its footprint), so empty detector margins do not dilute it.
The same noise level goes into every tilt, as with an even dose split.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def signal_variance(images: np.ndarray, regions: list[slice]) -> float:
    """Variance of the pixels of images (n, Y, T) inside each image's footprint columns `regions[i]`."""
    total, total_sq, count = 0.0, 0.0, 0
    for image, cols in zip(images, regions):
        part = image[:, cols].astype(np.float64)
        total += float(part.sum())
        total_sq += float(np.square(part).sum())
        count += part.size
    mean = total / max(count, 1)
    return max(total_sq / max(count, 1) - mean * mean, 0.0)


def noise_sigma(images: np.ndarray, regions: list[slice], snr: float) -> float:
    """Standard deviation of the noise that gives `snr` for images (n, Y, T)."""
    if not (np.isfinite(snr) and snr > 0):
        raise InputError(f"snr must be a positive number, got {snr}")
    return float(np.sqrt(signal_variance(images, regions) / snr))


def add_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Add white Gaussian noise of standard deviation `sigma` to float32 images (n, Y, T) in place."""
    for image in images:  # one tilt at a time keeps the temporary small
        image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
