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
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError, UnsupportedFormatError
from .atomic import atomic_path, check_not_input, register_input
from .particles import Particles
from .paths import require_input_path

logger = logging.getLogger(__name__)

FORMATS = ("star", "star5", "csv", "copick", "ndjson")
# fmt -> module in this package with `read(path, voxel_size, shape, tomo_name) -> Particles` and
# `prepare(particles, path, voxel_size, shape, tomo_name, fmt) -> save(tmp_path)`: `prepare` checks everything and
# converts, so a bad request fails before any file is touched. Imported only when used (pandas/starfile are slow).
_MODULES = {"star": "star", "star5": "star", "csv": "csvfile", "copick": "copick", "ndjson": "ndjson"}
_EXTENSIONS = {".star": "star", ".csv": "csv", ".json": "copick", ".ndjson": "ndjson"}

VoxelSize = float | Sequence[float]


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


def normalize_voxel_size(voxel_size: VoxelSize | None) -> np.ndarray | None:
    """Voxel size as a (3,) float array in Å along (z, y, x), from a float or a (z, y, x) sequence; None stays None."""
    if voxel_size is None:
        return None
    try:
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
    except (TypeError, ValueError) as exc:
        raise InputError(f"voxel size must be one number or three (z, y, x) in Å, got {voxel_size!r}") from exc
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(f"voxel size must be positive and finite (Å), got {tuple(vs.tolist())}")
    return vs


def normalize_shape(shape: Sequence[int] | None) -> tuple[int, int, int] | None:
    """Volume shape as three positive ints (z, y, x); None stays None."""
    if shape is None:
        return None
    try:
        values = [float(s) for s in shape]
    except (TypeError, ValueError) as exc:
        raise InputError(f"volume shape must be three integers (z, y, x), got {shape!r}") from exc
    if len(values) != 3 or any(v != int(v) or v < 1 for v in values):
        raise InputError(f"volume shape must be three positive integers (z, y, x), got {tuple(shape)}")
    return tuple(int(v) for v in values)


def require_voxel_size(voxel_size: np.ndarray | None, path: Path, what: str) -> np.ndarray:
    """Raise a clear error when a format in Å is converted without a voxel size."""
    if voxel_size is None:
        raise InputError(f"{path}: {what} needs the voxel size in Å; pass voxel_size (CLI: --voxel-size or --tomogram)")
    return voxel_size


def require_shape(shape: tuple[int, int, int] | None, path: Path, what: str) -> tuple[int, int, int]:
    """Raise a clear error when a centred format is converted without the volume shape."""
    if shape is None:
        raise InputError(f"{path}: {what} needs the tomogram shape (z, y, x); pass shape (CLI: --shape or --tomogram)")
    return shape


def relion_angles_to_matrices(angles: np.ndarray) -> np.ndarray:
    """Object-to-tomogram rotations from RELION Euler angles.

    Args:
        angles: (N, 3) rot, tilt, psi in degrees (ZYZ, RELION convention).

    Returns:
        (N, 3, 3) matrices acting on (x, y, z) column vectors; the inverse (transpose) of RELION's Euler matrix.
    """
    from scipy.spatial.transform import Rotation

    angles = np.asarray(angles, dtype=np.float64).reshape(-1, 3)
    if len(angles) == 0:
        return np.zeros((0, 3, 3))
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def matrices_to_relion_angles(matrices: np.ndarray, path: Path | str = "") -> np.ndarray:
    """RELION Euler angles from object-to-tomogram rotations; the inverse of `relion_angles_to_matrices`.

    Args:
        matrices: (N, 3, 3) rotations acting on (x, y, z) column vectors.
        path: file the matrices came from, for the error message.

    Returns:
        (N, 3) rot, tilt, psi in degrees; tilt in [0, 180], rot and psi in (-180, 180].
    """
    from scipy.spatial.transform import Rotation

    matrices = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    if len(matrices) == 0:
        return np.zeros((0, 3))
    if not np.all(np.isfinite(matrices)):
        raise InputError(f"{path}: rotation matrices contain NaN or Inf")
    # from_matrix would silently orthogonalise a scaled or sheared matrix; refuse those instead.
    gram = np.einsum("nij,nkj->nik", matrices, matrices)
    bad = np.flatnonzero(~np.all(np.isclose(gram, np.eye(3), atol=1e-4), axis=(1, 2)) | (np.linalg.det(matrices) < 0))
    if bad.size:
        raise InputError(f"{path}: {bad.size} orientation matrices are not rotations (first at point {bad[0]})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gimbal lock at tilt 0 or 180: scipy sets psi to 0, which is still exact
        angles = Rotation.from_matrix(matrices).inv().as_euler("ZYZ", degrees=True)
    angles[:, [0, 2]] = -((180.0 - angles[:, [0, 2]]) % 360.0 - 180.0)  # rot, psi into (-180, 180]
    return angles


def make_particles(path: Path, coords: np.ndarray, **fields: object) -> Particles:
    """Build `Particles`, naming the file and the rows when coordinates are missing or not finite.

    Args:
        path: the file the values came from.
        coords: (N, 3) z, y, x in voxels.
        fields: the other `Particles` fields.
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    bad = np.flatnonzero(~np.all(np.isfinite(coords), axis=1))
    if bad.size:
        rows = ", ".join(str(i + 1) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise InputError(f"{path}: {bad.size} particle(s) have missing, NaN or Inf coordinates (entries {rows})")
    for name in ("scores", "orientations"):
        value = fields.get(name)
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise InputError(f"{path}: particle {name} contain missing, NaN or Inf values")
    try:
        return Particles(coords, **fields)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from exc


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
    register_input(path)
    report_outside(particles, shp, path)
    logger.debug("read %d particles from %s (%s)", len(particles), path, fmt)
    return particles


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
