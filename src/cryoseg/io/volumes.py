"""Read and write volumes (MRC, TIFF stacks, OME-Zarr) as `Volume`: arrays in z, y, x, voxel size in Å.

Format modules (`mrc`, `tiff`, `omezarr`) are imported only when a file of their kind is touched.

Dtypes on write: a dtype the format stores as is is kept. Otherwise booleans and integers go to the
first integer type of the format that holds their range (MRC: int8, int16, uint16; TIFF: uint8,
uint16, int16), else to float32 with a warning (labels above 2**24 lose exactness); float64 goes to
float32. An explicit `dtype` is used as given (numpy casting) when the format can store it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from .atomic import atomic_path, check_not_input, register_input
from .paths import require_input_path
from .volume import Volume

logger = logging.getLogger(__name__)

VoxelSizeLike = float | tuple[float, float, float]

_EXTENSIONS = {".mrc": "mrc", ".rec": "mrc", ".map": "mrc", ".st": "mrc", ".tif": "tiff", ".tiff": "tiff"}
# dtypes each format stores unchanged; integer order is the preference when converting
FORMAT_DTYPES = {
    "mrc": ("int8", "int16", "uint16", "float16", "float32"),
    "tiff": ("uint8", "uint16", "int16", "float32"),
    "omezarr": ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64"),
}

# Å per unit; names as written by ImageJ, TIFF resolution units and OME-NGFF
_ANGSTROM_PER_UNIT = {
    "å": 1.0, "a": 1.0, "ang": 1.0, "angstrom": 1.0, "angstroms": 1.0, "\\u00c5": 1.0,
    "pm": 0.01, "picometer": 0.01,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "um": 1e4, "µm": 1e4, "μm": 1e4, "\\u00b5m": 1e4, "micron": 1e4, "microns": 1e4,
    "micrometer": 1e4, "micrometers": 1e4, "micrometre": 1e4,
    "mm": 1e7, "millimeter": 1e7, "cm": 1e8, "centimeter": 1e8, "inch": 2.54e8, "m": 1e10, "meter": 1e10,
}


def angstrom_per_unit(unit: str | None) -> float | None:
    """Å in one `unit` (e.g. "nm" -> 10), or None for a missing or unknown unit such as "pixel"."""
    if not unit:
        return None
    return _ANGSTROM_PER_UNIT.get(str(unit).strip().lower())


def volume_format(path: str | Path) -> str:
    """The format of `path` from its extension: "mrc", "tiff" or "omezarr"."""
    name = Path(path).name.lower()
    if name.endswith(".zarr"):
        return "omezarr"
    fmt = _EXTENSIONS.get(Path(name).suffix)
    if fmt is None:
        raise UnsupportedFormatError(
            f"{path}: unsupported volume format '{Path(name).suffix or name}'; "
            "use .mrc, .rec, .map, .st, .tif, .tiff, .zarr or .ome.zarr"
        )
    return fmt


# values per slab when a whole volume is scanned (NaN check, statistics, writes): 32 MB as float64
SLAB_ELEMENTS = 1 << 22


def iter_z_slabs(shape: tuple[int, ...], max_elements: int | None = None) -> Iterator[slice]:
    """Slices along z (axis 0) covering `shape`, at most `max_elements` (default SLAB_ELEMENTS) values per slab
    but at least one plane."""
    plane = math.prod(shape[1:]) or 1
    step = max(1, (max_elements or SLAB_ELEMENTS) // plane)
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0]))


@dataclass(frozen=True)
class ChunkStats:
    """Statistics over the finite values of an array; `nonfinite` counts NaN and Inf."""

    min: float
    max: float
    mean: float
    std: float
    count: int
    nonfinite: int


def chunk_stats(data: np.ndarray) -> ChunkStats:
    """Min, max, mean and std of the finite values of `data` (Z, ...), read in z-slabs to bound memory."""
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi, nonfinite = math.inf, -math.inf, 0
    for sl in iter_z_slabs(data.shape):
        slab = np.asarray(data[sl], dtype=np.float64)
        if data.dtype.kind in "fc":
            finite = np.isfinite(slab)
            nonfinite += int(slab.size - np.count_nonzero(finite))
            slab = slab[finite]
        if slab.size == 0:
            continue
        k, k_mean = slab.size, float(slab.mean())
        k_m2 = float(np.square(slab - k_mean).sum())
        # Chan et al. pairwise combination of (count, mean, M2): stable across many slabs
        delta = k_mean - mean
        total = n + k
        mean += delta * k / total
        m2 += k_m2 + delta * delta * n * k / total
        n = total
        lo, hi = min(lo, float(slab.min())), max(hi, float(slab.max()))
    if n == 0:
        return ChunkStats(math.nan, math.nan, math.nan, math.nan, 0, nonfinite)
    return ChunkStats(lo, hi, mean, math.sqrt(m2 / n), n, nonfinite)


def _voxel_size_override(voxel_size: VoxelSizeLike | None) -> tuple[float, float, float] | None:
    if voxel_size is None:
        return None
    vs = np.asarray(voxel_size, dtype=float).ravel()
    if vs.size not in (1, 3) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(f"voxel size override must be one positive number or three (z, y, x) in Å, got {voxel_size}")
    vs = np.broadcast_to(vs, (3,))
    return (float(vs[0]), float(vs[1]), float(vs[2]))


def _check_header_voxel_size(voxel_size: tuple[float, float, float], path: Path) -> None:
    """Refuse a voxel size that is NaN, infinite or negative in the file. Zero is the usual "unset" and is kept:
    `Volume.require_voxel_size()` refuses it where a size is needed."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    if not np.all(np.isfinite(vs)) or np.any(vs < 0):
        shown = ", ".join(f"{v:g}" for v in vs)
        raise InputError(f"{path}: the header's voxel size ({shown} Å, z, y, x) is not a positive number; "
                         "pass --voxel-size (voxel_size=) to set it")


def _handle_nonfinite(data: np.ndarray, path: Path, nan_policy: str) -> np.ndarray:
    """Refuse NaN/Inf, or replace them with the mean of the finite values (a copy; the file is untouched)."""
    if data.dtype.kind not in "fc":
        return data
    bad = sum(int(np.count_nonzero(~np.isfinite(data[sl]))) for sl in iter_z_slabs(data.shape))
    if bad == 0:
        return data
    if nan_policy == "raise":
        raise InputError(
            f"{path}: {bad} of {data.size} values are NaN or Inf; pass nan_policy='clean' "
            "(CLI: --nan-policy clean) to replace them with the mean of the finite values"
        )
    stats = chunk_stats(data)
    if stats.count == 0:
        raise InputError(f"{path}: every value is NaN or Inf; nothing to clean with")
    cleaned = np.array(data)
    for sl in iter_z_slabs(cleaned.shape):
        slab = cleaned[sl]
        slab[~np.isfinite(slab)] = stats.mean
    logger.warning("%s: replaced %d NaN/Inf values with the mean of the finite values (%.6g)", path, bad, stats.mean)
    return cleaned


def read_volume(
    path: str | Path,
    voxel_size: VoxelSizeLike | None = None,
    nan_policy: str = "raise",
    permissive: bool = False,
    mmap: bool = True,
) -> Volume:
    """Read a 3D volume from MRC (.mrc .rec .map .st), a TIFF stack (.tif .tiff) or OME-Zarr (.zarr .ome.zarr).

    Args:
        path: the file (a directory for OME-Zarr).
        voxel_size: Å per voxel, one number or (z, y, x); replaces the value in the file's header.
        nan_policy: "raise" refuses NaN/Inf values; "clean" replaces them with the mean of the finite values.
        permissive: passed to mrcfile, to read MRC files with a malformed header.
        mmap: memory-map MRC and uncompressed TIFF data (read-only) instead of loading it.

    Returns:
        a `Volume` with data of shape (Z, Y, X). A voxel size the file does not give is stored as 0, so
        `Volume.require_voxel_size()` fails until one is set.
    """
    if nan_policy not in ("raise", "clean"):
        raise InputError(f"nan_policy must be 'raise' or 'clean', got {nan_policy!r}")
    volume = read_volume_geometry(path, voxel_size=voxel_size, permissive=permissive, mmap=mmap)
    volume.data = _handle_nonfinite(volume.data, volume.source, nan_policy)
    return volume


def read_volume_geometry(
    path: str | Path,
    voxel_size: VoxelSizeLike | None = None,
    permissive: bool = False,
    mmap: bool = True,
) -> Volume:
    """Read a volume as `read_volume` does but without looking at its values (no NaN/Inf check), for callers
    that need only its shape, voxel size and origin, e.g. to convert coordinates. Arguments as `read_volume`.

    Returns:
        a `Volume` with data of shape (Z, Y, X) (memory-mapped where the format allows), which may hold NaN/Inf.
    """
    path = Path(path)
    fmt = volume_format(path)
    require_input_path(path, "OME-Zarr volume" if fmt == "omezarr" else f"{fmt.upper()} file", fmt == "omezarr")
    override = _voxel_size_override(voxel_size)
    if fmt == "omezarr":
        from .omezarr import read_omezarr

        data, vs, origin = read_omezarr(path)
    elif fmt == "mrc":
        from .mrc import read_mrc

        data, vs, origin = read_mrc(path, permissive=permissive, mmap=mmap)
    else:
        from .tiff import read_tiff

        data, vs = read_tiff(path, mmap=mmap)
        origin = (0.0, 0.0, 0.0)
    if data.ndim == 2:
        raise InputError(f"{path}: a single 2D image of shape {tuple(data.shape)}, not a 3D volume or stack (z, y, x)")
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume (z, y, x), got an array of shape {tuple(data.shape)}")
    if data.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {data.dtype.name} values; cryoseg reads real-valued volumes only")
    if override is None:
        _check_header_voxel_size(vs, path)
    register_input(path)
    return Volume(data, voxel_size=override or vs, origin=origin, source=path)


def _storage_dtype(data: np.ndarray, fmt: str, requested: Any, path: Path) -> np.dtype:
    """The dtype `data` is written as in `fmt` (see the module docstring for the rule)."""
    allowed = FORMAT_DTYPES[fmt]
    if requested is not None:
        dtype = np.dtype(requested)
        if dtype.name not in allowed:
            raise UnsupportedFormatError(
                f"{path}: {fmt} cannot store dtype {dtype.name}; use one of {', '.join(allowed)}"
            )
        return dtype
    dtype = data.dtype
    if dtype.name in allowed:
        return dtype
    if dtype.kind in "biu":
        stats = chunk_stats(data) if data.size else ChunkStats(0, 0, 0, 0, 0, 0)
        for name in allowed:
            if np.dtype(name).kind in "iu":
                info = np.iinfo(name)
                if info.min <= stats.min and stats.max <= info.max:
                    return np.dtype(name)
        logger.warning(
            "%s: %s values in [%g, %g] do not fit an integer type of %s; writing float32 "
            "(exact only up to 2**24)", path, dtype.name, stats.min, stats.max, fmt,
        )
        return np.dtype("float32")
    if dtype.kind == "f":
        return np.dtype("float32")
    raise UnsupportedFormatError(f"{path}: cannot write {dtype.name} data as {fmt}")


def write_volume(volume: Volume, path: str | Path, inputs: Iterable[str | Path] = (), dtype: Any = None) -> Path:
    """Write `volume` (data (Z, Y, X), voxel size and origin in Å) atomically to MRC, TIFF or OME-Zarr by extension.

    MRC keeps voxel size and origin in its header; OME-Zarr writes an NGFF 0.4 multiscale pyramid (zarr
    format 2) with axes z, y, x in Å; TIFF writes an ImageJ stack with spacing in nm (TIFF keeps no origin).
    Refuses to overwrite `inputs`, `volume.source` or any file read in this process.

    Returns:
        the path written.
    """
    path = Path(path)
    fmt = volume_format(path)
    inputs = [*inputs, *([volume.source] if volume.source is not None else [])]
    check_not_input(path, inputs)
    target = _storage_dtype(volume.data, fmt, dtype, path)
    if target != volume.data.dtype:
        logger.debug("%s: writing %s data as %s", path, volume.data.dtype.name, target.name)
    with atomic_path(path, inputs, is_dir=fmt == "omezarr") as tmp:
        if fmt == "mrc":
            from .mrc import write_mrc

            write_mrc(volume.data, tmp, volume.voxel_size, volume.origin, target)
        elif fmt == "tiff":
            from .tiff import write_tiff

            write_tiff(volume.data, tmp, volume.voxel_size, target)
        else:
            from .omezarr import write_omezarr

            write_omezarr(volume.data, tmp, volume.voxel_size, volume.origin, target)
    return path


def volume_info(volume: Volume) -> dict[str, Any]:
    """Shape, dtype, voxel size and origin (Å, z, y, x) and statistics of the finite values, computed in slabs."""
    stats = chunk_stats(volume.data)
    return {
        "source": str(volume.source) if volume.source is not None else None,
        "shape": volume.shape,
        "dtype": volume.data.dtype.name,
        "voxel_size": volume.voxel_size,
        "origin": volume.origin,
        "min": stats.min,
        "max": stats.max,
        "mean": stats.mean,
        "std": stats.std,
        "nonfinite": stats.nonfinite,
    }
