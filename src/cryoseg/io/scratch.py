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
_LIBC: Any = None  # glibc, once looked up (False: not glibc)


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
    """Give memory the process has freed back to the system (glibc's `malloc_trim`; elsewhere nothing)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def map_large_allocations(threshold_bytes: int = 1 << 20) -> None:
    """Have glibc map every allocation of `threshold_bytes` or more on its own and unmap it when freed.

    By default glibc raises this threshold to the size of the largest block freed so far (up to 32 MB), so the
    many same-sized arrays of a long run (slice embeddings dropped from a bounded cache) come from its heap, which
    it keeps: a 400x1024x1024 pick held 4.4 GB of heap with 1.5 GB in use. A fixed threshold ends that.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes))


_M_MMAP_THRESHOLD = -3


def _glibc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        except OSError:
            _LIBC = False
    return _LIBC or None
