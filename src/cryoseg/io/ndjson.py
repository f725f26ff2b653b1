"""CryoET Data Portal point annotations: newline-delimited JSON, one point per line.

Each line is `{"type": "point" | "orientedPoint" | "instancePoint", "location": {"x", "y", "z"}, ...}` with:

- location in voxels (0-based) of the tomogram the annotation belongs to, x, y, z; no centring, no Å.
- xyz_rotation_matrix (orientedPoint): 3x3 object-to-tomogram rotation on (x, y, z) columns, the inverse of
  RELION's Euler matrix (the portal's ingestion turns RELION (90, 45, 180) into [[0, -0.707, 0.707], [1, 0, 0],
  [0, 0.707, 0.707]]); converted to RELION Euler angles here.
- instance_id (instancePoint, or any point that has one).

One file holds one annotated object, and has no scores: writing several classes is refused, scores are dropped
with a warning. A zero-byte file is a valid file with no points.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from .conversions import (
    make_particles,
    matrices_to_relion_angles,
    relion_angles_to_matrices,
)
from .particles import Particles

logger = logging.getLogger(__name__)

POINT_TYPES = {"point": "point", "orientedpoint": "orientedPoint", "instancepoint": "instancePoint"}


def read(path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
         tomo_name: str | None) -> Particles:
    """Read portal points (voxels, x, y, z) into z, y, x voxels; see the module docstring."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{path}: not a text file ({exc})") from exc
    xyz, rotations, instance_ids = [], [], []
    has_rotation = has_instance = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorruptFileError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{path}: line {number} is not a JSON object")
        kind = str(record.get("type", "point"))
        if kind.lower() not in POINT_TYPES:
            raise InputError(f"{path}: line {number} has type '{kind}'; expected one of {sorted(POINT_TYPES.values())}")
        try:
            loc = record["location"]
            xyz.append([float(loc["x"]), float(loc["y"]), float(loc["z"])])
            matrix = record.get("xyz_rotation_matrix")
            if matrix is not None:
                matrix = np.asarray(matrix, dtype=np.float64)
                if matrix.shape != (3, 3):
                    raise InputError(f"{path}: line {number} has an xyz_rotation_matrix of shape {matrix.shape}")
                has_rotation = True
            rotations.append(np.eye(3) if matrix is None else matrix)
            iid = record.get("instance_id")
            has_instance |= iid is not None
            instance_ids.append(0 if iid is None else int(iid))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path}: line {number} is malformed ({type(exc).__name__}: {exc}); expected "
                             "'location': {'x', 'y', 'z'} in voxels") from exc
    coords = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)[:, ::-1]  # x, y, z -> z, y, x
    orientations = matrices_to_relion_angles(np.asarray(rotations), path) if has_rotation else None
    return make_particles(path, coords, orientations=orientations,
                          instance_ids=np.asarray(instance_ids, dtype=np.int64) if has_instance else None)


def prepare(particles: Particles, path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
            tomo_name: str | None, fmt: str) -> Callable[[Path], None]:
    """Build portal ndjson lines (voxels, x, y, z); return the function that saves them."""
    if len(particles) == 0:  # it would be a 0-byte file, which `read_particles` refuses for every format
        raise InputError(f"{path}: no particles to write; an ndjson point file without points would be empty "
                         "(0 bytes), which readers cannot tell from a failed write")
    if particles.classes is not None and len(np.unique(particles.classes)) > 1:
        unique = np.unique(particles.classes)
        raise InputError(
            f"{path}: a CryoET Data Portal point file holds one object, but the particles have {len(unique)} "
            f"classes ({', '.join(map(str, unique[:10].tolist()))}); write one class at a time (CLI: --class)"
        )
    if particles.scores is not None:
        logger.warning("%s: CryoET Data Portal points have no scores; %d scores not written", path, len(particles))
    rotations = relion_angles_to_matrices(particles.orientations) if particles.orientations is not None else None
    lines = []
    for i in range(len(particles)):
        z, y, x = (float(v) for v in particles.coords[i])
        record: dict[str, object] = {"type": "point", "location": {"x": x, "y": y, "z": z}}
        if rotations is not None:
            record["type"] = "orientedPoint"
            record["xyz_rotation_matrix"] = rotations[i].tolist()
        if particles.instance_ids is not None:
            if rotations is None:
                record["type"] = "instancePoint"
            record["instance_id"] = int(particles.instance_ids[i])
        lines.append(json.dumps(record, allow_nan=False))
    text = "".join(line + "\n" for line in lines)

    def save(tmp: Path) -> None:
        tmp.write_text(text)

    return save
