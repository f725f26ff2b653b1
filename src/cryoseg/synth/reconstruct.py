"""Weighted back-projection: ramp (R-weighted) filtering of each projection along t, then back-projection."""

from __future__ import annotations

import numpy as np
import scipy.fft

from .fourier import apply_filter, frequency_grid
from .tilt import angular_weights, back_project


def ramp_response(length: int, cutoff: float = 0.5) -> np.ndarray:
    """Real frequency response (length//2+1,) of the band-limited ramp |k| (k in cycles per voxel).

    Built from the spatial Ram-Lak kernel (h0 = 1/4, h_n = -1/(pi n)^2 for odd n) rather than sampling
    |k|, so the zero frequency is weighted correctly. A cos^2 roll-off over the last fifth below `cutoff`
    (cycles per voxel, 0.5 = Nyquist) tames noise near the sampling limit.
    """
    n = np.arange(length)
    n = np.where(n <= length // 2, n, n - length)
    kernel = np.zeros(length)
    odd = n % 2 == 1
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    kernel[0] = 0.25
    response = scipy.fft.rfft(kernel).real
    k = scipy.fft.rfftfreq(length)
    start = 0.8 * cutoff
    ramp_down = np.cos(0.5 * np.pi * np.clip((k - start) / (cutoff - start), 0.0, 1.0)) ** 2
    return response * ramp_down


def weighted_back_projection(images: np.ndarray, angles: np.ndarray, shape: tuple[int, int, int],
                             padded: tuple[int, int], threads: int, cutoff: float = 0.5,
                             transfer: np.ndarray | None = None) -> np.ndarray:
    """Reconstruct a volume from projection images by R-weighted back-projection.

    Args:
        images: (n, Y, T) projection images (y, t) from `tilt.project` geometry.
        angles: (n,) tilt angles in degrees about y.
        shape: (Z, Y, X) of the reconstruction.
        padded: (Yp, Tp) FFT size of the filtering, at least (Y, 2 T) so the ramp does not wrap around.
        threads: worker threads.
        cutoff: low-pass cut-off of the ramp, cycles per voxel.
        transfer: optional extra (Yp, Tp//2+1) multiplier applied in the same pass (e.g. CTF phase flip).

    Returns:
        (Z, X, Y) float32 reconstruction (transpose axes 1 and 2 for z, y, x), in the units of the volume
        that was projected (a fully sampled ±90° series reconstructs a unit ball at about 1).
    """
    _, kt = frequency_grid(padded)
    ramp = np.broadcast_to(ramp_response(padded[1], cutoff)[None, :], (padded[0], kt.shape[1]))
    filt = ramp if transfer is None else ramp * transfer
    filtered = apply_filter(images, filt, padded, threads)
    return back_project(filtered, angles, shape, angular_weights(angles), threads)
