"""zarr 2 and zarr 3 behind one small API: copick pins zarr < 3, everything else may bring zarr 3, and cryoseg
must work beside either. Everything cryoseg writes is zarr format 2, which both read."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def new_group(path: str | Path) -> Any:
    """A new, empty zarr group (format 2) at `path`, replacing what is there."""
    import zarr

    if zarr_major() >= 3:
        return zarr.open_group(str(path), mode="w", zarr_format=2)
    return zarr.open_group(str(path), mode="w")


def new_array(group: Any, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any,
              fill_value: Any = 0, write_empty_chunks: bool = False, nested: bool = False) -> Any:
    """A new array `name` in `group`.

    Args:
        write_empty_chunks: store chunks that hold only the fill value too (then a missing chunk means an
            incomplete copy, not an empty region).
        nested: chunk keys "0/0/0" (folders, as OME-Zarr writers use) instead of "0.0.0".
    """
    separator = "/" if nested else "."
    if zarr_major() >= 3:
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
                                  chunk_key_encoding={"name": "v2", "separator": separator},
                                  config={"write_empty_chunks": write_empty_chunks})
    return group.create_dataset(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill_value,
                                dimension_separator=separator, write_empty_chunks=write_empty_chunks)


def stored_chunks(array: Any) -> int:
    """How many of `array`'s chunks are stored (zarr 2 miscounts nested "0/0/0" keys, so they are looked up)."""
    if zarr_major() >= 3:
        return int(array.nchunks_initialized)
    import itertools

    store = array.chunk_store if array.chunk_store is not None else array.store
    grid = itertools.product(*(range(n) for n in array.cdata_shape))
    return sum(array._chunk_key(index) in store for index in grid)
