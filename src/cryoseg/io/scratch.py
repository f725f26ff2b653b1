"""Whole-tomogram work arrays that may be larger than memory.

A large array (a low-passed copy of the tomogram, instance labels) is backed by a temporary file, memory-mapped:
the kernel writes its pages out when memory runs short and reads them back on use, so a tomogram larger than
memory can be worked on in place. The file is unlinked at once and vanishes with the array. Small arrays stay in
ordinary memory, where they are faster.
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

SCRATCH_BYTES = 1 << 29  # arrays above 512 MB go to a temporary file
_TRIM: Any = None  # glibc's malloc_trim once looked up (False: not available)


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


def release_free_memory() -> None:
    """Give memory the process has freed back to the system (glibc's `malloc_trim`; elsewhere nothing).

    After many same-sized arrays have come and gone (slice embeddings dropped from a bounded cache), glibc keeps
    their memory in its heap for reuse, and a 400x1024x1024 pick held 4.4 GB of heap with 1.5 GB in use.
    """
    global _TRIM
    if _TRIM is None:
        import ctypes
        import ctypes.util

        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)

