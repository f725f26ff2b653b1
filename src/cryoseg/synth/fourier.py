"""Filtering stacks of 2D images (y, t) in Fourier space, zero-padded so the filter does not wrap around."""

from __future__ import annotations

import numpy as np
import scipy.fft

from .parallel import ordered_map


def padded_shape(shape: tuple[int, int], pad: int) -> tuple[int, int]:
    """FFT-friendly (y, t) size at least `pad` larger than `shape` along both axes."""
    return (scipy.fft.next_fast_len(shape[0] + pad, real=True), scipy.fft.next_fast_len(shape[1] + pad, real=True))


def frequency_grid(padded: tuple[int, int], voxel_size: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (ky (Yp, 1), kt (1, Tp//2+1)) of an rfft2 over `padded`, in cycles per Å
    (cycles per voxel when `voxel_size` is 1)."""
    ky = scipy.fft.fftfreq(padded[0], d=voxel_size)[:, None]
    kt = scipy.fft.rfftfreq(padded[1], d=voxel_size)[None, :]
    return ky, kt


def apply_filter(images: np.ndarray, transfer: np.ndarray, padded: tuple[int, int], threads: int,
                 chunk: int = 4) -> np.ndarray:
    """Multiply each image's spectrum by `transfer`; returns a new float32 stack.

    Args:
        images: (n, Y, T) stack of images (y, t).
        transfer: (Yp, Tp//2+1) real multiplier on the rfft2 grid of `padded`.
        padded: (Yp, Tp) FFT size, at least (Y, T); images are zero-padded at the end.
        threads: worker threads over chunks of images.
    """
    n, height, width = images.shape
    out = np.empty_like(images, dtype=np.float32)
    transfer = transfer.astype(np.float32)

    def run(start: int) -> int:
        block = images[start:start + chunk]
        spectrum = scipy.fft.rfft2(block, s=padded, axes=(1, 2))
        spectrum *= transfer
        out[start:start + chunk] = scipy.fft.irfft2(spectrum, s=padded, axes=(1, 2))[:, :height, :width]
        return start

    for _ in ordered_map(run, range(0, n, chunk), threads):
        pass
    return out
