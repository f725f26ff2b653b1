"""OME-Zarr (OME-NGFF) volumes via zarr: read level 0 of a multiscale image, write an NGFF 0.4 pyramid."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, InputError
from . import arrays
from .scratch import scratch_array
from .units import angstrom_per_unit
from .volume import Volume
from .zarrs import new_array, new_group, stored_chunks, zarr_major

logger = logging.getLogger(__name__)

MAX_LEVELS = 3  # level 0 plus at most two 2x-downsampled levels
MIN_DOWNSAMPLE_SIZE = 64  # a level is only downsampled further while its smallest axis is at least this
CHUNK = 64
# dtypes written unchanged: zarr stores every real numpy dtype
OMEZARR_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64")


def read_omezarr(path: Path, store: Any = None, level: int = 0
                 ) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """Read one level of an OME-Zarr image (NGFF 0.4 or 0.5), or a plain zarr array.

    The level is read chunk row by chunk row into a scratch array (`cryoseg.io.scratch`): a large tomogram lands in
    a memory-mapped file, never whole in memory.

    Args:
        path: the image folder.
        store: a zarr store to read instead of the folder `path` (e.g. a copick tomogram's); `path` then only names
            the image in messages.
        level: the pyramid level (0: full resolution; 1: 2x binned, ...).

    Returns:
        data: array (Z, Y, X) (singleton t/c axes dropped),
        voxel size in Å (z, y, x) from the level's `scale` and the axis units; 0 for an axis without a unit,
        origin in Å (z, y, x) from the level's `translation`.
    """
    import zarr

    try:
        node = zarr.open(str(path) if store is None else store, mode="r")
        if isinstance(node, zarr.Array):
            logger.warning("%s: a plain zarr array without OME metadata; voxel size unknown", path)
            return _read_by_rows(node, 0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        attrs = node.attrs.asdict()
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if not multiscales:
            raise CorruptFileError(f"{path}: a zarr group without OME-Zarr 'multiscales' metadata")
        ms = multiscales[0]
        if not 0 <= level < len(ms["datasets"]):
            raise InputError(f"{path}: no pyramid level {level}; the image has levels 0 to {len(ms['datasets']) - 1}")
        level0 = ms["datasets"][level]
        array = node[level0["path"]]
        names, units = _axes(ms.get("axes"), array.ndim)
        scale, translation = _transforms(level0.get("coordinateTransformations", []), array.ndim)
        # multiscale-wide transformations apply after the per-level ones
        g_scale, g_translation = _transforms(ms.get("coordinateTransformations", []), array.ndim)
        translation = translation * g_scale + g_translation
        scale = scale * g_scale
        keep = [i for i, name in enumerate(names) if name in ("z", "y", "x")]
        for i, name in enumerate(names):
            if i not in keep and array.shape[i] != 1:
                raise InputError(
                    f"{path}: OME-Zarr axis '{name}' has {array.shape[i]} entries; cryoseg reads one 3D volume"
                )
        _warn_missing_chunks(array, path)
        data = _read_by_rows(array, next((i for i in keep if names[i] == "z"), 0))
    except InputError:
        raise
    except Exception as exc:  # zarr and JSON errors come in many types; all mean the same to the user
        if (Path(path) / "zarr.json").is_file() and zarr_major() < 3:
            raise InputError(f"{path}: a zarr format 3 store (OME-Zarr 0.5) needs zarr >= 3, and this environment "
                             f"has zarr {zarr.__version__} (copick pins zarr < 3); read it in an environment "
                             "without copick, or rewrite it as zarr format 2 (OME-Zarr 0.4)") from None
        raise CorruptFileError(f"{path}: not a readable OME-Zarr image ({type(exc).__name__}: {exc})") from None

    order = sorted(keep, key=lambda i: "zyx".index(names[i]))
    data = np.transpose(data, order + [i for i in range(data.ndim) if i not in keep])
    data = data.reshape(data.shape[: len(order)])
    voxel, origin = [], []
    for i in order:
        per_unit = angstrom_per_unit(units[i])
        if per_unit is None:
            logger.warning("%s: axis '%s' has no known unit (%r); its voxel size is treated as unknown",
                           path, names[i], units[i])
        voxel.append(scale[i] * per_unit if per_unit else 0.0)
        origin.append(translation[i] * per_unit if per_unit else 0.0)
    voxel += [0.0] * (3 - len(voxel))
    origin += [0.0] * (3 - len(origin))
    return data, tuple(voxel[:3]), tuple(origin[:3])


def write_omezarr(volume: Volume, path: Path, dtype: np.dtype) -> None:
    """Write `volume` (data (Z, Y, X)) as an NGFF 0.4 multiscale image (zarr format 2) with axes z, y, x in Å.

    Levels are 2x downsampled (block mean for floats, every second voxel for integer labels, so labels
    stay labels) while the smallest axis is at least MIN_DOWNSAMPLE_SIZE, up to MAX_LEVELS levels.
    An axis of unknown voxel size (0) is written without a unit and with scale in voxels.
    """

    data, voxel_size, origin = volume.data, volume.voxel_size, volume.origin
    root = new_group(path)
    mean_pool = np.dtype(dtype).kind in "fc"
    source: Any = data
    datasets = []
    for level in range(MAX_LEVELS):
        if level > 0:
            if min(source.shape) < MIN_DOWNSAMPLE_SIZE:
                break
            shape = tuple(n // 2 for n in source.shape) if mean_pool else tuple((n + 1) // 2 for n in source.shape)
        else:
            shape = data.shape
        chunks = tuple(min(CHUNK, max(n, 1)) for n in shape)
        # every chunk stored, zeros too: a reader can then tell a missing chunk (an incomplete copy) from an empty one
        array = new_array(root, str(level), shape=shape, chunks=chunks, dtype=dtype, write_empty_chunks=True,
                          nested=True)
        # whole chunks per write (a partial chunk is recompressed on every write); a level > 0 reads 8x its size
        for zs, ys in _tiles(shape, chunks, arrays.SLAB_ELEMENTS // (8 if level else 1)):
            if level == 0:
                array[zs, ys] = np.asarray(source[zs, ys], dtype=dtype)
            else:
                array[zs, ys] = _downsample(source, zs, ys, shape[2], mean_pool).astype(dtype)
        factor = 2**level
        offset = (factor - 1) / 2 if mean_pool else 0.0  # centre of the averaged block, in level-0 voxels
        scale, translation = [], []
        for vs, org in zip(voxel_size, origin):
            step = vs if vs > 0 else 1.0
            scale.append(step * factor)
            translation.append((org if vs > 0 else 0.0) + offset * step)
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation", "translation": translation}]})
        source = array
    axes = [{"name": n, "type": "space", **({"unit": "angstrom"} if vs > 0 else {})}
            for n, vs in zip("zyx", voxel_size)]
    root.attrs["multiscales"] = [{
        "version": "0.4", "name": path.name, "axes": axes, "datasets": datasets,
        "type": "mean" if mean_pool else "nearest",
    }]


def _read_by_rows(array: Any, axis: int) -> np.ndarray:
    """The whole zarr `array`, read one chunk row along `axis` at a time into a scratch array."""
    data = scratch_array(tuple(array.shape), array.dtype)
    step = array.chunks[axis]
    for start in range(0, array.shape[axis], step):
        index = (slice(None),) * axis + (slice(start, start + step),)
        data[index] = array[index]
    return data


def _warn_missing_chunks(array: Any, path: Path) -> None:
    """zarr reads a chunk that is not stored as the fill value, silently. Writers may leave out empty chunks on
    purpose, but in a tomogram a missing chunk usually means an incomplete copy: say so."""
    missing = int(array.nchunks) - stored_chunks(array)
    if missing:
        logger.warning("%s: %d of %d chunks are not stored and read as the fill value %s (an incomplete copy, or "
                       "a writer that leaves out empty chunks)", path, missing, array.nchunks, array.fill_value)


def _tiles(shape: tuple[int, ...], chunks: tuple[int, ...], budget: int) -> Iterator[tuple[slice, slice]]:
    """(z, y) slices of whole chunk rows covering `shape` (Z, Y, X), about `budget` values each (at least one row)."""
    rows = max(1, budget // (chunks[0] * chunks[1] * max(shape[2], 1)))
    for z0 in range(0, shape[0], chunks[0]):
        for y0 in range(0, shape[1], rows * chunks[1]):
            yield slice(z0, min(z0 + chunks[0], shape[0])), slice(y0, min(y0 + rows * chunks[1], shape[1]))


def _downsample(source: Any, zs: slice, ys: slice, nx: int, mean_pool: bool) -> np.ndarray:
    """The tile (zs, ys, :nx) of the 2x-downsampled `source` (Z, Y, X)."""
    block = np.asarray(source[2 * zs.start : 2 * zs.stop, 2 * ys.start : 2 * ys.stop])
    if not mean_pool:
        return block[::2, ::2, ::2]
    nz, ny = zs.stop - zs.start, ys.stop - ys.start
    block = block[:, :, : 2 * nx].astype(np.float64)
    return block.reshape(nz, 2, ny, 2, nx, 2).mean(axis=(1, 3, 5))


def _axes(axes: Any, ndim: int) -> tuple[list[str], list[str | None]]:
    """Axis names and units; NGFF 0.3 gives plain names, older files none (then the last three are z, y, x)."""
    if not axes:
        names = ["c", "t"][: max(0, ndim - 3)][::-1] + ["z", "y", "x"][-ndim:]
        return names, [None] * ndim
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    if len(names) != ndim:
        raise ValueError(f"{len(names)} axes in the metadata for an array with {ndim} dimensions")
    return names, units


def _transforms(transforms: list[dict], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, translation = np.ones(ndim), np.zeros(ndim)
    for t in transforms or []:
        if t.get("type") == "scale":
            scale = np.asarray(t["scale"], dtype=float)
        elif t.get("type") == "translation":
            translation = np.asarray(t["translation"], dtype=float)
    return scale, translation
