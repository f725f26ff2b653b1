"""Whole-tomogram work arrays that may be larger than memory.

A large array (a low-passed copy of the tomogram, instance labels) is backed by a temporary file, memory-mapped:
the kernel writes its pages out when memory runs short and reads them back on use, so a tomogram larger than
memory can be worked on in place. The file is unlinked at once and vanishes with the array. Small arrays stay in
ordinary memory, where they are faster.
"""

from __future__ import annotations

import tempfile

import numpy as np

SCRATCH_BYTES = 1 << 29  # arrays above 512 MB go to a temporary file


def scratch_array(shape: tuple[int, ...], dtype: np.dtype | type, threshold_bytes: int | None = None) -> np.ndarray:
    """A zeroed array of `shape` and `dtype`: in memory up to `threshold_bytes` (default `SCRATCH_BYTES`), else
    memory-mapped from an unlinked temporary file (in the system's temporary folder; set TMPDIR to choose another
    disk)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= (SCRATCH_BYTES if threshold_bytes is None else threshold_bytes):
        return np.zeros(shape, dtype)
    with tempfile.TemporaryFile(prefix="cryoseg-scratch-") as handle:
        handle.truncate(nbytes)  # sparse: reads as zeros, takes disk only where written
        return np.memmap(handle, dtype=dtype, mode="r+", shape=shape)  # the map outlives the closed file
