"""RELION STAR particle files (RELION <= 4 pixel coordinates and RELION 5 centred Å coordinates), via `starfile`.

Units, centring and axis order at this boundary:

- RELION <= 4: rlnCoordinateX/Y/Z are x, y, z in pixels. cryoseg reads them as 0-based voxels of the tomogram
  the picks belong to (RELION 4.1 dropped the old +1 offset). RELION's own subtomogram averaging expects these in
  unbinned tilt-series pixels: picks made on a binned tomogram must be multiplied by the binning for that.
- RELION 5: rlnCenteredCoordinateX/Y/ZAngst are x, y, z in Å from the tomogram centre. RELION 5 sets the centre to
  size / 2 with float division (`TomogramSet::loadTomogram`: `centre = (w0/2.0, h0/2.0, d0/2.0)`), and
  `ParticleSet::getParticleCoordDecenteredPixel` computes `pixel = centred_Å / pixel_size + centre`. So, per axis,

      centred_Å = (voxel - size / 2) * voxel_size        voxel = centred_Å / voxel_size + size / 2

  which is half a voxel off the geometric centre (size - 1) / 2 of 0-based voxel centres. RELION uses the unbinned
  tilt-series size and pixel size; with a binned tomogram the products are the same as long as the unbinned size
  is the binned shape times the binning.
- rlnOriginX/Y/ZAngst (Å, refinement shifts) are subtracted, rotated first by the rlnTomoSubtomogram{Rot,Tilt,Psi}
  pre-rotation when present (as `ParticleSet::getPosition` does). Older rlnOriginX/Y/Z are in pixels.
- Angles: rlnAngleRot/Tilt/Psi (degrees, ZYZ); with a subtomogram pre-rotation the stored orientation is the
  composition A_subtomogram @ A_particle.
- rlnClassNumber -> classes, rlnAutopickFigureOfMerit -> scores, rlnTomoParticleId -> instance_ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from .conversions import (
    make_particles,
    matrices_to_relion_angles,
    relion_angles_to_matrices,
    require_shape,
    require_voxel_size,
)
from .particles import Particles

logger = logging.getLogger(__name__)

XYZ = ("X", "Y", "Z")
PIXEL_COLUMNS = [f"rlnCoordinate{a}" for a in XYZ]
CENTRED_COLUMNS = [f"rlnCenteredCoordinate{a}Angst" for a in XYZ]
ANGLE_COLUMNS = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
SUBTOMO_COLUMNS = ["rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"]
ORIGIN_ANGST_COLUMNS = [f"rlnOrigin{a}Angst" for a in XYZ]
ORIGIN_PIXEL_COLUMNS = [f"rlnOrigin{a}" for a in XYZ]
CLASS_COLUMN = "rlnClassNumber"
SCORE_COLUMN = "rlnAutopickFigureOfMerit"
INSTANCE_COLUMN = "rlnTomoParticleId"
TOMO_COLUMN = "rlnTomoName"


def _numeric(df, column: str, path: Path) -> np.ndarray:
    import pandas as pd

    try:
        return pd.to_numeric(df[column], errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: column {column} holds non-numeric values ({exc})") from exc


def _integers(df, column: str, path: Path) -> np.ndarray:
    values = _numeric(df, column, path)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise InputError(f"{path}: column {column} must hold whole numbers")
    return values.astype(np.int64)


def _has(df, columns: list[str]) -> bool:
    return all(c in df.columns for c in columns)


def _particle_table(path: Path):
    """The particle loop of a STAR file: the block named `particles`, else the (possibly unnamed) block with
    coordinate columns."""
    import pandas as pd
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises many kinds on malformed text
        raise CorruptFileError(f"{path}: not a readable STAR file ({type(exc).__name__}: {exc})") from exc
    tables = {name: b for name, b in blocks.items() if isinstance(b, pd.DataFrame)}
    if not tables:
        raise CorruptFileError(f"{path}: no STAR data table found (empty, truncated or not a STAR file)")
    if "particles" in tables:
        return tables["particles"]
    for table in tables.values():
        if _has(table, PIXEL_COLUMNS) or _has(table, CENTRED_COLUMNS):
            return table
    found = sorted({c for t in tables.values() for c in t.columns})
    raise InputError(
        f"{path}: no particle coordinates found; expected rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst, "
        f"found columns {found}"
    )


def _select_tomogram(df, tomo_name: str | None, path: Path):
    if TOMO_COLUMN not in df.columns:
        return df
    names = df[TOMO_COLUMN].astype(str)
    unique = list(dict.fromkeys(names))
    if tomo_name is not None:
        if tomo_name not in unique:
            raise InputError(f"{path}: no particles of tomogram '{tomo_name}'; it holds {unique}")
        return df[names == tomo_name].reset_index(drop=True)
    if len(unique) > 1:
        listed = ", ".join(unique[:5]) + (", ..." if len(unique) > 5 else "")
        raise InputError(
            f"{path}: holds particles of {len(unique)} tomograms ({listed}); choose one with tomo_name "
            f"(CLI: --tomo-name)"
        )
    return df


def read(path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
         tomo_name: str | None) -> Particles:
    """Read a RELION STAR file (version from the columns) into z, y, x voxels; see the module docstring."""
    df = _particle_table(path)
    df = _select_tomogram(df, tomo_name, path)
    centred = _has(df, CENTRED_COLUMNS)
    pixels = _has(df, PIXEL_COLUMNS)
    if not (centred or pixels):
        raise InputError(
            f"{path}: no particle coordinates found; expected rlnCoordinateX/Y/Z or "
            f"rlnCenteredCoordinateX/Y/ZAngst, found columns {list(df.columns)}"
        )
    if centred and pixels and (voxel_size is None or shape is None):
        # Files exported for RELION 5 by other tools may carry both; the centred ones are what RELION 5 uses.
        logger.warning("%s: has centred Å and pixel coordinates; using rlnCoordinateX/Y/Z because the voxel size "
                       "and shape needed for the centred ones were not given", path)
        centred = False
    n = len(df)

    # Refinement shifts, in the tomogram's x, y, z frame (rotated by the subtomogram pre-rotation if present).
    sub_rot = relion_angles_to_matrices(np.stack([_numeric(df, c, path) for c in SUBTOMO_COLUMNS], axis=1)) \
        if _has(df, SUBTOMO_COLUMNS) else None
    shift_ang = np.stack([_numeric(df, c, path) for c in ORIGIN_ANGST_COLUMNS], axis=1) \
        if _has(df, ORIGIN_ANGST_COLUMNS) else np.zeros((n, 3))
    shift_pix = np.stack([_numeric(df, c, path) for c in ORIGIN_PIXEL_COLUMNS], axis=1) \
        if _has(df, ORIGIN_PIXEL_COLUMNS) else np.zeros((n, 3))
    if sub_rot is not None:
        shift_ang = np.einsum("nij,nj->ni", sub_rot, shift_ang)
        shift_pix = np.einsum("nij,nj->ni", sub_rot, shift_pix)

    if centred:
        vs_xyz = require_voxel_size(voxel_size, path, "RELION 5 centred coordinates (Å)")[::-1]
        size_xyz = np.asarray(require_shape(shape, path, "RELION 5 centred coordinates"), float)[::-1]
        angst = np.stack([_numeric(df, c, path) for c in CENTRED_COLUMNS], axis=1) - shift_ang
        xyz = angst / vs_xyz + size_xyz / 2.0 - shift_pix
    else:
        xyz = np.stack([_numeric(df, c, path) for c in PIXEL_COLUMNS], axis=1) - shift_pix
        if np.any(shift_ang != 0):
            vs_xyz = require_voxel_size(voxel_size, path, "applying the rlnOriginX/Y/ZAngst shifts")[::-1]
            xyz = xyz - shift_ang / vs_xyz
    coords = xyz[:, ::-1]  # x, y, z -> z, y, x

    orientations = None
    if any(c in df.columns for c in ANGLE_COLUMNS) or sub_rot is not None:
        # RELION treats a missing angle column as 0.
        angles = np.stack([_numeric(df, c, path) if c in df.columns else np.zeros(n) for c in ANGLE_COLUMNS], axis=1)
        if sub_rot is None:
            orientations = angles
        elif np.all(np.isfinite(angles)):
            orientations = matrices_to_relion_angles(sub_rot @ relion_angles_to_matrices(angles), path)
        else:
            orientations = angles  # make_particles reports the bad values
    classes = _integers(df, CLASS_COLUMN, path) if CLASS_COLUMN in df.columns else None
    scores = _numeric(df, SCORE_COLUMN, path) if SCORE_COLUMN in df.columns else None
    instance_ids = _integers(df, INSTANCE_COLUMN, path) if INSTANCE_COLUMN in df.columns else None
    return make_particles(path, coords, classes=classes, scores=scores, instance_ids=instance_ids,
                          orientations=orientations)


def prepare(particles: Particles, path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
            tomo_name: str | None, fmt: str) -> Callable[[Path], None]:
    """Convert to a RELION 4 ("star") or RELION 5 ("star5") particle table; return the function that saves it."""
    import pandas as pd

    columns: dict[str, object] = {}
    if tomo_name is not None:
        columns[TOMO_COLUMN] = [tomo_name] * len(particles)
    xyz = particles.coords[:, ::-1]  # z, y, x -> x, y, z
    if fmt == "star5":
        vs_xyz = require_voxel_size(voxel_size, path, "RELION 5 centred coordinates (Å)")[::-1]
        size_xyz = np.asarray(require_shape(shape, path, "RELION 5 centred coordinates"), float)[::-1]
        angst = (xyz - size_xyz / 2.0) * vs_xyz  # RELION 5 centre = size / 2, see the module docstring
        for i, name in enumerate(CENTRED_COLUMNS):
            columns[name] = angst[:, i]
    else:
        for i, name in enumerate(PIXEL_COLUMNS):
            columns[name] = xyz[:, i]
    if particles.orientations is not None:
        for i, name in enumerate(ANGLE_COLUMNS):
            columns[name] = particles.orientations[:, i]
    if particles.classes is not None:
        columns[CLASS_COLUMN] = particles.classes
    if particles.scores is not None:
        columns[SCORE_COLUMN] = particles.scores
    if particles.instance_ids is not None:
        columns[INSTANCE_COLUMN] = particles.instance_ids
    table = pd.DataFrame(columns)

    def save(tmp: Path) -> None:
        import starfile

        # 6 decimals: 1e-6 voxel (or Å) is far below any pick's precision.
        starfile.write({"particles": table}, tmp, float_format="%.6f")

    return save
