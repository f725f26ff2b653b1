"""TIFF stacks via tifffile. Pixel size comes from X/YResolution and the unit, z spacing from ImageJ metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from .units import angstrom_per_unit
from .volume import Volume

TIFF_EXTENSIONS = (".tif", ".tiff")
# dtypes written unchanged (ImageJ hyperstacks hold no others)
TIFF_DTYPES = ("uint8", "uint16", "int16", "float32")
# TIFF ResolutionUnit tag: 2 = inch, 3 = centimetre (1 = none)
_RESOLUTION_UNITS = {2: "inch", 3: "cm"}


def read_tiff(path: Path, mmap: bool = True) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read the first image series of a TIFF file.

    Returns:
        data: array whose last three axes are (Z, Y, X) for a stack ((Y, X) for a single image); singleton
            axes beyond three are dropped. A read-only memory map when `mmap` and the data is uncompressed.
        voxel size in Å (z, y, x); 0 where the file gives no calibration.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            imagej = tif.imagej_metadata or {}
            tags = tif.pages[0].tags
            xres = _tag(tags, "XResolution")
            yres = _tag(tags, "YResolution")
            res_unit = _tag(tags, "ResolutionUnit")
            contiguous = series.dataoffset is not None
            data = None if (mmap and contiguous) else series.asarray()
        if data is None:
            data = tifffile.memmap(path, mode="r")
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
        raise CorruptFileError(f"{path}: not a readable TIFF file ({' '.join(str(exc).split())})") from None

    if "S" in axes and shape[axes.index("S")] > 1:
        raise InputError(f"{path}: an RGB/multi-sample image (axes {axes}, shape {shape}), not a grey-value stack")
    if data.ndim > 3:
        data = data.reshape([n for n in data.shape if n > 1] or [1])

    unit = imagej.get("unit") if imagej else _RESOLUTION_UNITS.get(int(getattr(res_unit, "value", res_unit) or 1))
    scale = angstrom_per_unit(unit)
    voxel = [0.0, _pixel_size(yres, scale), _pixel_size(xres, scale)]
    spacing = imagej.get("spacing")
    if scale is not None and spacing:
        voxel[0] = float(spacing) * scale
    return data, (voxel[0], voxel[1], voxel[2])


def write_tiff(volume: Volume, path: Path, dtype: np.dtype) -> None:
    """Write `volume` (data (Z, Y, X)) as an ImageJ hyperstack in `dtype` (one of TIFF_DTYPES), plane by plane.

    The voxel size (Å, z, y, x) is stored in nm: ImageJ `spacing` for z and X/YResolution for y, x; TIFF keeps no
    origin. A zero (unknown) voxel size is left out rather than written as a calibration.
    """
    import tifffile

    data = volume.data
    vz, vy, vx = (v / 10.0 for v in volume.voxel_size)  # Å -> nm
    metadata: dict = {"axes": "ZYX"}
    kwargs: dict = {}
    if vx > 0 and vy > 0:
        kwargs["resolution"] = (1.0 / vx, 1.0 / vy)
        metadata["unit"] = "nm"
        if vz > 0:
            metadata["spacing"] = vz
    planes = (np.asarray(data[z], dtype=dtype) for z in range(data.shape[0]))
    tifffile.imwrite(path, planes, shape=data.shape, dtype=dtype, imagej=True, metadata=metadata, **kwargs)


def _tag(tags, name: str):
    tag = tags.get(name)
    return None if tag is None else tag.value


def _pixel_size(resolution, scale: float | None) -> float:
    """Å per pixel from a TIFF resolution (pixels per unit, a rational) and Å per unit; 0 when unknown."""
    if resolution is None or scale is None:
        return 0.0
    num, den = resolution if isinstance(resolution, tuple) else (resolution, 1)
    return float(den) / float(num) * scale if num else 0.0
