"""MRC/CCP4 volumes via mrcfile. The header speaks x, y, z; everything returned here is z, y, x."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError
from .arrays import chunk_stats, iter_z_slabs
from .volume import Volume

logger = logging.getLogger(__name__)

MRC_EXTENSIONS = (".mrc", ".rec", ".map", ".st")
# dtypes mrcfile stores without changing them (uint8 would be widened to uint16, so it is converted by us)
MRC_DTYPES = ("int8", "int16", "uint16", "float16", "float32")


def read_mrc(
    path: Path, permissive: bool = False, mmap: bool = True
) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """Read an MRC file.

    Returns:
        data: array of shape (Z, Y, X) (a read-only memory map when `mmap`; 2D files give (Y, X)),
        voxel size in Å (z, y, x), 0 where the header has none,
        origin in Å (z, y, x).
    Raises CorruptFileError for a truncated or corrupt file, naming the file.
    """
    import mrcfile

    _check_header_sizes(path)
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with opener(str(path), mode="r", permissive=permissive) as mrc:
                data = mrc.data
                vs = mrc.voxel_size
                org = mrc.header.origin
                voxel_size = (float(vs.z), float(vs.y), float(vs.x))
                origin = (float(org.z), float(org.y), float(org.x))
    except (ValueError, OSError, EOFError, TypeError) as exc:
        problem = _truncation(path) or f"not a readable MRC file ({_one_line(exc)})"
        hint = ""
        if not permissive and "truncated" not in problem:
            hint = "; if only the header is malformed, try permissive=True (--permissive)"
        raise CorruptFileError(f"{path}: {problem}{hint}") from None
    if data is None:
        problem = _truncation(path) or "the MRC data block could not be read (corrupt header or data)"
        raise CorruptFileError(f"{path}: {problem}")
    for w in caught:  # permissive mode reports header problems as warnings; keep them in the log
        logger.warning("%s: %s", path, w.message)
    return data, voxel_size, origin


def write_mrc(volume: Volume, path: Path, dtype: np.dtype) -> None:
    """Write `volume` (data (Z, Y, X)) to a new MRC file at `path` as `dtype` (one of MRC_DTYPES), slab by slab.

    Its voxel size and origin (Å, z, y, x) are stored as the header's x, y, z.
    """
    import mrcfile
    from mrcfile.utils import mode_from_dtype

    data, (vz, vy, vx), (oz, oy, ox) = volume.data, volume.voxel_size, volume.origin
    with mrcfile.new_mmap(str(path), shape=data.shape, mrc_mode=mode_from_dtype(np.dtype(dtype))) as mrc:
        for sl in iter_z_slabs(data.shape):
            mrc.data[sl] = data[sl]
        mrc.voxel_size = (vx, vy, vz)
        mrc.header.origin = (ox, oy, oz)
        # header statistics computed in slabs: update_header_stats() would build full-size temporaries
        stats = chunk_stats(mrc.data)
        mrc.header.dmin, mrc.header.dmax = stats.min, stats.max
        mrc.header.dmean, mrc.header.rms = stats.mean, stats.std


def _check_header_sizes(path: Path) -> None:
    """Refuse a header whose nx, ny or nz is zero or negative before mrcfile maps the data: it would fail with an
    overflow deep inside mmap, or return an empty "volume" with NaN statistics."""
    import mrcfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(str(path), mode="r", permissive=True, header_only=True) as mrc:
                sizes = (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz))
    except Exception:  # an unreadable header is reported by the full read, with its own message
        return
    if min(sizes) <= 0:
        raise CorruptFileError(f"{path}: not a readable MRC file (corrupt header: nx, ny, nz = {sizes}; every size "
                               "must be positive)")


def _truncation(path: Path) -> str | None:
    """Say how much data is missing when the header describes more than the file holds, else None."""
    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(str(path), mode="r", permissive=True, header_only=True) as mrc:
                h = mrc.header
                count = int(h.nx) * int(h.ny) * int(h.nz)
                expected = int(h.nbytes) + int(h.nsymbt) + count * data_dtype_from_header(h).itemsize
    except Exception:  # the header itself is unreadable: no size to compare
        return None
    actual = path.stat().st_size
    if actual < expected:
        return f"truncated MRC file: the header describes {expected} bytes but the file holds {actual}"
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
