"""copick picks JSON files (`CopickPicksFile`: one pickable object, one run, one user and session).

Units, centring and axis order at this boundary:

- points[].location {x, y, z} is in Å from the corner of the tomogram: Å = voxel index * voxel size, per axis
  (copick converts pixels the same way, with no half-voxel shift). Reading divides by the voxel size: the one
  given, else the file's `voxel_spacing`.
- points[].transformation_ is a 4x4 object-to-tomogram transform on (x, y, z, 1) columns; its translation (Å) is
  added to the location, its rotation becomes RELION Euler angles via `matrices_to_relion_angles` (the
  rotation is the inverse of RELION's Euler matrix, as in copick's own RELION conversion). When the file says
  `trust_orientation: false`, orientations are not read.
- score and instance_id per point (copick defaults 1.0 and 0 where a point omits them).
- pickable_object_name is the object: class id N for a name `class_N`, else class 1 with that name.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, InputError
from .conversions import (
    make_particles,
    matrices_to_relion_angles,
    relion_angles_to_matrices,
    require_voxel_size,
)
from .particles import Particles

logger = logging.getLogger(__name__)

USER_ID = "cryoseg"
SESSION_ID = "0"  # copick: session "0" marks picks made by a tool
_CLASS_NAME = re.compile(r"class_(\d+)")


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or "points" not in data:
        raise InputError(f"{path}: not a copick picks file (expected a JSON object with a 'points' list)")
    return data


def _spacing(data: dict) -> float | None:
    """The document's `voxel_spacing` in Å when it is a positive finite number, else None (absent or unusable)."""
    spacing = data.get("voxel_spacing")
    valid = isinstance(spacing, (int, float)) and np.isfinite(spacing) and spacing > 0
    return float(spacing) if valid else None


def recorded_voxel_spacing(path: Path) -> float | None:
    """The voxel spacing (Å) the picks in `path` were made at, as the file records it; None when it records none.

    A file that is not a readable picks document also gives None: reading it reports that with its own message.
    """
    try:
        return _spacing(_load(path))
    except (CorruptFileError, InputError, OSError):
        return None


def _voxel_size(data: dict, voxel_size: np.ndarray | None, path: Path) -> np.ndarray | None:
    spacing = _spacing(data)
    valid = spacing is not None
    if voxel_size is None:
        if valid:
            logger.info("%s: using the file's voxel_spacing %.4g Å", path, spacing)
            return np.full(3, spacing)
        return None
    if valid and not np.allclose(voxel_size, spacing, rtol=1e-4):
        logger.warning("%s: file says voxel_spacing %.4g Å; using the given %s Å", path, spacing,
                       tuple(voxel_size.tolist()))
    return voxel_size


def read(path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
         tomo_name: str | None) -> Particles:
    """Read copick picks (Å) into z, y, x voxels; see the module docstring."""
    data = _load(path)
    points = data["points"] or []
    if not isinstance(points, list):
        raise InputError(f"{path}: 'points' must be a list")
    unit = str(data.get("unit", "angstrom")).strip().lower()
    if unit not in ("angstrom", "a", "å"):
        raise InputError(f"{path}: locations are in '{data.get('unit')}'; cryoseg reads copick picks in angstrom")
    vs = _voxel_size(data, voxel_size, path)
    n = len(points)
    positions = np.full((n, 3), np.nan)  # x, y, z in Å
    rotations = np.tile(np.eye(3), (n, 1, 1))
    scores = np.ones(n)
    instance_ids = np.zeros(n, dtype=np.int64)
    has_rotation = has_score = has_instance = False
    for i, point in enumerate(points):
        try:
            loc = point["location"]
            xyz = np.array([float(loc["x"]), float(loc["y"]), float(loc["z"])])
            transform = point.get("transformation_")
            if transform is not None:
                transform = np.asarray(transform, dtype=np.float64)
                if transform.shape != (4, 4) or not np.allclose(transform[3], [0, 0, 0, 1]):
                    raise InputError(f"{path}: point {i} has a transformation_ that is not a 4x4 affine matrix")
                rotations[i] = transform[:3, :3]
                xyz = xyz + transform[:3, 3]
                has_rotation = True
            if point.get("score") is not None:
                scores[i] = float(point["score"])
                has_score = True
            if point.get("instance_id") is not None:
                instance_ids[i] = int(point["instance_id"])
                has_instance = True
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: point {i} is malformed ({type(exc).__name__}: {exc}); expected "
                             "{'location': {'x', 'y', 'z'}, ...}") from exc
        positions[i] = xyz
    if n:
        vs = require_voxel_size(vs, path, "copick locations in Å")
        coords = positions[:, ::-1] / vs  # x, y, z Å -> z, y, x voxels
    else:
        coords = np.zeros((0, 3))
    orientations = None
    if has_rotation and data.get("trust_orientation", True) is not False:
        orientations = matrices_to_relion_angles(rotations, path)
    classes, class_names = None, {}
    name = data.get("pickable_object_name")
    if name:
        match = _CLASS_NAME.fullmatch(str(name))
        cid = int(match.group(1)) if match else 1
        classes = np.full(n, cid, dtype=np.int64)
        class_names = {} if match else {cid: str(name)}
    return make_particles(path, coords, classes=classes, scores=scores if has_score else None,
                          instance_ids=instance_ids if has_instance else None, orientations=orientations,
                          class_names=class_names)


def object_name(particles: Particles, path: Path) -> str:
    """The one pickable-object name for these particles; refuses several classes (a picks file holds one)."""
    if particles.classes is not None and len(particles):
        unique = np.unique(particles.classes)
        if len(unique) > 1:
            raise InputError(
                f"{path}: a copick picks file holds one object, but the particles have {len(unique)} classes "
                f"({', '.join(map(str, unique[:10].tolist()))}); write one class at a time (CLI: --class)"
            )
        cid = int(unique[0])
        return particles.class_names.get(cid, f"class_{cid}")
    if len(particles.class_names) == 1:
        return next(iter(particles.class_names.values()))
    return "particle"


def prepare(particles: Particles, path: Path, voxel_size: np.ndarray | None, shape: tuple[int, int, int] | None,
            tomo_name: str | None, fmt: str) -> Callable[[Path], None]:
    """Build a copick picks JSON document (Å); return the function that saves it."""
    vs = require_voxel_size(voxel_size, path, "copick locations in Å")
    name = object_name(particles, path)
    angst = particles.coords * vs  # z, y, x voxels -> Å
    rotations = (relion_angles_to_matrices(particles.orientations) if particles.orientations is not None
                 else np.tile(np.eye(3), (len(particles), 1, 1)))
    points = []
    for i in range(len(particles)):
        transform = np.eye(4)
        transform[:3, :3] = rotations[i]
        point: dict[str, object] = {
            "location": {"x": float(angst[i, 2]), "y": float(angst[i, 1]), "z": float(angst[i, 0])},
            "transformation_": transform.tolist(),
        }
        if particles.instance_ids is not None:
            point["instance_id"] = int(particles.instance_ids[i])
        if particles.scores is not None:
            point["score"] = float(particles.scores[i])
        points.append(point)
    document = {
        "pickable_object_name": name,
        "user_id": USER_ID,
        "session_id": SESSION_ID,
        "run_name": tomo_name,
        # copick keeps one isotropic spacing per tomogram.
        "voxel_spacing": float(vs[0]) if np.allclose(vs, vs[0]) else None,
        "unit": "angstrom",
        "trust_orientation": particles.orientations is not None,
        "points": points,
    }
    text = json.dumps(document, allow_nan=False) + "\n"

    def save(tmp: Path) -> None:
        tmp.write_text(text)

    return save
