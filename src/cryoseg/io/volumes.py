"""Read and write volumes (MRC, TIFF stacks, OME-Zarr) as `Volume`: arrays in z, y, x, voxel size in Å.

The format modules (`mrc`, `tiff`, `omezarr`) do the reading and writing; they import their libraries (mrcfile,
tifffile, zarr) only when a file of their kind is touched.

Dtypes on write: a dtype the format stores as is is kept. Otherwise booleans and integers go to the
first integer type of the format that holds their range (MRC: int8, int16, uint16; TIFF: uint8,
uint16, int16), else to float32 with a warning (labels above 2**24 lose exactness); float64 goes to
float32. An explicit `dtype` is used as given (numpy casting) when the format can store it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from . import mrc, omezarr, tiff
from .arrays import ChunkStats, chunk_stats, iter_z_slabs
from .atomic import atomic_path, check_not_input
from .paths import require_input_path
from .volume import Volume

logger = logging.getLogger(__name__)

# NaN/Inf in a volume: "raise" refuses them, "clean" replaces them with the mean of the finite values
NAN_POLICIES = ("raise", "clean")
DEFAULT_NAN_POLICY = "raise"

VoxelSizeLike = float | tuple[float, float, float]

# extension -> format; ".zarr" (and ".ome.zarr") folders are OME-Zarr
_EXTENSIONS = {**{ext: "mrc" for ext in mrc.MRC_EXTENSIONS}, **{ext: "tiff" for ext in tiff.TIFF_EXTENSIONS}}
# dtypes each format stores unchanged; integer order is the preference when converting
FORMAT_DTYPES = {"mrc": mrc.MRC_DTYPES, "tiff": tiff.TIFF_DTYPES, "omezarr": omezarr.OMEZARR_DTYPES}


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
    nan_policy: str = DEFAULT_NAN_POLICY,
    permissive: bool = False,
    mmap: bool = True,
    level: int = 0,
) -> Volume:
    """Read a 3D volume from MRC (.mrc .rec .map .st), a TIFF stack (.tif .tiff) or OME-Zarr (.zarr .ome.zarr).

    Args:
        path: the file (a directory for OME-Zarr).
        voxel_size: Å per voxel, one number or (z, y, x); replaces the value in the file's header.
        nan_policy: "raise" refuses NaN/Inf values; "clean" replaces them with the mean of the finite values.
        permissive: passed to mrcfile, to read MRC files with a malformed header.
        mmap: memory-map MRC and uncompressed TIFF data (read-only) instead of loading it.
        level: OME-Zarr pyramid level (0: full resolution, 1: binned 2x, ...; the voxel size is the level's).

    Returns:
        a `Volume` with data of shape (Z, Y, X). A voxel size the file does not give is stored as 0, so
        `Volume.require_voxel_size()` fails until one is set.
    """
    if nan_policy not in NAN_POLICIES:
        raise InputError(f"nan_policy must be 'raise' or 'clean', got {nan_policy!r}")
    volume = read_volume_geometry(path, voxel_size=voxel_size, permissive=permissive, mmap=mmap, level=level)
    volume.data = _handle_nonfinite(volume.data, volume.source, nan_policy)
    return volume


def read_volume_geometry(
    path: str | Path,
    voxel_size: VoxelSizeLike | None = None,
    permissive: bool = False,
    mmap: bool = True,
    level: int = 0,
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
    if level and fmt != "omezarr":
        raise InputError(f"{path}: pyramid levels are read from OME-Zarr images only; this is {fmt.upper()}")
    if fmt == "omezarr":
        data, vs, origin = omezarr.read_omezarr(path, level=level)
    elif fmt == "mrc":
        data, vs, origin = mrc.read_mrc(path, permissive=permissive, mmap=mmap)
    else:
        data, vs = tiff.read_tiff(path, mmap=mmap)
        origin = (0.0, 0.0, 0.0)
    if data.ndim == 2:
        raise InputError(f"{path}: a single 2D image of shape {tuple(data.shape)}, not a 3D volume or stack (z, y, x)")
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3D volume (z, y, x), got an array of shape {tuple(data.shape)}")
    if data.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {data.dtype.name} values; cryoseg reads real-valued volumes only")
    if override is None:
        _check_header_voxel_size(vs, path)
    return Volume(data, voxel_size=override or vs, origin=origin, source=path)


def tomogram_geometry(path: str | Path, voxel_size: VoxelSizeLike | None = None,
                      ) -> tuple[tuple[float, float, float] | None, tuple[int, int, int]]:
    """The voxel size and shape that coordinate conversion takes from a tomogram (its values are not read).

    Args:
        path: the tomogram, in any format `read_volume` reads.
        voxel_size: Å per voxel, one number or (z, y, x); replaces the header's, as in `read_volume`.

    Returns:
        (voxel_size, shape): the voxel size (z, y, x) in Å, or None (with a warning) when neither `voxel_size`
        nor the header gives one; the shape (Z, Y, X) in voxels.
    """
    volume = read_volume_geometry(path, voxel_size=voxel_size)
    if all(v > 0 for v in volume.voxel_size):  # a header without a voxel size stores 0
        return volume.voxel_size, volume.shape
    logger.warning("%s: the header gives no voxel size; pass --voxel-size (voxel_size=) where one is needed", path)
    return None, volume.shape


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
    Refuses to overwrite `inputs` (the files this result was computed from) or `volume.source`.

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
            mrc.write_mrc(volume, tmp, target)
        elif fmt == "tiff":
            tiff.write_tiff(volume, tmp, target)
        else:
            omezarr.write_omezarr(volume, tmp, target)
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
