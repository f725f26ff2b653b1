"""Particle coordinate files: one entry point that dispatches to the format modules.

Inside cryoseg, picks are a `Particles` table with coordinates (N, 3) in z, y, x voxels of the tomogram they belong
to, where voxel index i has its centre at coordinate i (0-based). Each format module converts at its boundary:

| fmt    | file                      | coordinates in the file                                  | needs             |
|--------|---------------------------|----------------------------------------------------------|-------------------|
| star   | RELION <= 4 STAR          | rlnCoordinateX/Y/Z: x, y, z voxels (pixels), 0-based     | -                 |
| star5  | RELION 5 STAR             | rlnCenteredCoordinateX/Y/ZAngst: Å from centre size / 2  | voxel_size, shape |
| csv    | CSV with a header         | columns z, y, x (any order, by name) in voxels           | -                 |
| copick | copick picks JSON         | points[].location {x, y, z} in Å (voxel * voxel size)    | voxel_size        |
| ndjson | CryoET Data Portal points | one JSON per line, location {x, y, z} in voxels          | -                 |

Orientations travel as RELION Euler angles (rot, tilt, psi) in degrees, ZYZ. Formats that store a rotation matrix
(copick, ndjson) hold the object-to-tomogram rotation acting on (x, y, z) column vectors, which is the inverse of
RELION's Euler matrix: `Rotation.from_euler("ZYZ", (rot, tilt, psi), degrees=True).inv()` (as copick and the CryoET
Data Portal ingestion both convert).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from .atomic import atomic_path, check_not_input
from .conversions import VoxelSize, normalize_shape, normalize_voxel_size
from .particles import Particles
from .paths import require_input_path
from .volume import Volume

logger = logging.getLogger(__name__)

FORMATS = ("star", "star5", "csv", "copick", "ndjson")
# fmt -> module in this package with `read(path, voxel_size, shape, tomo_name) -> Particles` and
# `prepare(particles, path, voxel_size, shape, tomo_name, fmt) -> save(tmp_path)`: `prepare` checks everything and
# converts, so a bad request fails before any file is touched. Imported only when used (pandas/starfile are slow);
# they take what they share from `conversions`, never from this module, so no import goes both ways.
_MODULES = {"star": "star", "star5": "star", "csv": "csvfile", "copick": "copick", "ndjson": "ndjson"}
_EXTENSIONS = {".star": "star", ".csv": "csv", ".json": "copick", ".ndjson": "ndjson"}


def guess_format(path: str | Path) -> str:
    """Format name from the file extension: .star -> "star", .csv, .json -> "copick", .ndjson.

    For reading, "star" covers RELION 4 and 5 (detected from the columns); for writing it means RELION 4.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        known = ", ".join(_EXTENSIONS)
        raise UnsupportedFormatError(
            f"{path}: cannot tell the coordinate format from the extension '{suffix}'; use one of {known} "
            f"or name the format ({', '.join(FORMATS)})"
        )
    return _EXTENSIONS[suffix]


def _check_format(fmt: str | None, path: Path) -> str:
    if fmt is None:
        return guess_format(path)
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UnsupportedFormatError(
            f"unknown coordinate format '{fmt}' for {path}; choose one of {', '.join(FORMATS)}"
        )
    return fmt


def report_outside(particles: Particles, shape: tuple[int, int, int] | None, path: Path | str) -> int:
    """Log a warning with the number of particles outside a volume of `shape` (z, y, x); they are kept."""
    if shape is None or len(particles) == 0:
        return 0
    n_out = int(particles.outside(shape).sum())
    if n_out:
        logger.warning("%s: %d of %d particles lie outside the volume %s (z, y, x); kept", path, n_out,
                       len(particles), tuple(shape))
    return n_out


def _module(fmt: str):
    return importlib.import_module(f"{__package__}.{_MODULES[fmt]}")


def read_particles(path: str | Path, fmt: str | None = None, voxel_size: VoxelSize | None = None,
                   shape: Sequence[int] | None = None, *, tomo_name: str | None = None) -> Particles:
    """Read particle coordinates into `Particles` (z, y, x voxels).

    Args:
        path: coordinate file.
        fmt: one of FORMATS, or None to guess from the extension. "star" and "star5" both read either RELION
            version: the columns decide.
        voxel_size: Å per voxel, one number or (z, y, x); needed for formats in Å (RELION 5, copick without a
            voxel_spacing in the file).
        shape: (z, y, x) shape of the tomogram; needed for RELION 5 and used to warn about particles outside it.
        tomo_name: for STAR files with rlnTomoName, keep only this tomogram's particles (required when the file
            holds several tomograms).

    Returns:
        `Particles`; a table with a header and no rows gives an empty one.
    """
    path = Path(path)
    fmt = _check_format(fmt, path)
    vs = normalize_voxel_size(voxel_size)
    shp = normalize_shape(shape)
    require_input_path(path, "coordinate file")
    # One rule for every format: a 0-byte file is more likely a failed write than a deliberate empty set.
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); expected {fmt} coordinates")
    particles = _module(fmt).read(path, vs, shp, tomo_name)
    report_outside(particles, shp, path)
    logger.debug("read %d particles from %s (%s)", len(particles), path, fmt)
    return particles


def read_particles_for(path: str | Path, tomogram: Volume, fmt: str | None = None) -> Particles:
    """Read the picks of `tomogram` from a coordinate file, in its voxels (z, y, x).

    As `read_particles` with the tomogram's voxel size and shape, but stricter: a file that records the voxel
    spacing its points were picked at (copick's `voxel_spacing`) must agree with the tomogram's voxel size.
    Picks made on another binning would otherwise land at the wrong places without a word. (`read_particles` with
    an explicit voxel size only warns, because converting a file to another spacing is a legitimate request.)

    Args:
        path: coordinate file (STAR, CSV, copick JSON, NDJSON).
        tomogram: the volume the picks are for; its voxel size (Å, z, y, x) and shape (Z, Y, X) are used.
        fmt: one of FORMATS, or None to guess from the extension.

    Raises:
        InputError: the file's voxel spacing differs from the tomogram's voxel size, and whatever
            `read_particles` raises.
    """
    path = Path(path)
    if _check_format(fmt, path) == "copick" and path.is_file():
        spacing = _module("copick").recorded_voxel_spacing(path)
        vs = np.asarray(tomogram.voxel_size)
        if spacing is not None and not np.allclose(vs, spacing, rtol=1e-3):
            where = f" of {tomogram.source}" if tomogram.source else ""
            raise InputError(f"{path}: points were picked at a voxel spacing of {spacing:g} Å but the tomogram{where} "
                             f"has {'x'.join(f'{v:g}' for v in vs)} Å voxels; rescale the picks or pass the "
                             f"matching tomogram")
    return read_particles(path, fmt, voxel_size=tomogram.voxel_size, shape=tomogram.shape)


def write_particles(particles: Particles, path: str | Path, fmt: str | None = None,
                    voxel_size: VoxelSize | None = None, shape: Sequence[int] | None = None,
                    inputs: Iterable[str | Path] = (), *, tomo_name: str | None = None) -> Path:
    """Write `Particles` atomically in a coordinate format; never replaces an input file.

    Args:
        particles: picks with coordinates (N, 3) z, y, x in voxels.
        path: output file.
        fmt: one of FORMATS, or None to guess from the extension (.star writes RELION 4; pass "star5" for RELION 5).
        voxel_size: Å per voxel, one number or (z, y, x); needed for RELION 5 and copick.
        shape: (z, y, x) tomogram shape; needed for RELION 5, and used to warn about particles outside it.
        inputs: files this result was computed from; refused as output paths.
        tomo_name: tomogram name written as rlnTomoName (STAR) or run_name (copick).

    Returns:
        The path written.
    """
    path = Path(path)
    fmt = _check_format(fmt, path)
    vs = normalize_voxel_size(voxel_size)
    shp = normalize_shape(shape)
    check_not_input(path, inputs)
    for name in ("scores", "orientations"):
        value = getattr(particles, name)
        if value is not None and not np.all(np.isfinite(value)):
            raise InputError(f"cannot write {path}: particle {name} contain NaN or Inf")
    save = _module(fmt).prepare(particles, path, vs, shp, tomo_name, fmt)
    report_outside(particles, shp, path)
    with atomic_path(path, inputs) as tmp:
        save(tmp)
    logger.debug("wrote %d particles to %s (%s)", len(particles), path, fmt)
    return path
