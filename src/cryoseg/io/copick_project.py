"""copick projects through the copick library (optional extra `cryoseg[copick]`): read a run's tomogram, write picks
and segmentations into a run with a user and session id.

A copick project is a JSON config naming a static root (read-only data) and an overlay root (where tools write);
runs hold voxel spacings, each with tomograms by type ("wbp", "denoised", ...), picks per object, user and session,
and segmentations. Picks are in Å (x, y, z); cryoseg's are z, y, x voxels: the voxel spacing converts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, InputError
from .conversions import relion_angles_to_matrices
from .particles import Particles
from .volume import Volume

logger = logging.getLogger(__name__)

DEFAULT_USER = "cryoseg"
DEFAULT_SESSION = "0"  # copick: session "0" marks picks made by a tool


@dataclass(frozen=True)
class CopickSource:
    """Where a tomogram lives in a copick project."""

    config: str
    run: str
    voxel_spacing: float
    tomo_type: str

    def describe(self) -> str:
        return f"copick run {self.run} ({self.tomo_type} at {self.voxel_spacing:g} Å)"


@dataclass(frozen=True)
class CopickTarget:
    """Where results go in a copick project: the object picked, and who picked it."""

    object_name: str
    user_id: str = DEFAULT_USER
    session_id: str = DEFAULT_SESSION


def _require_copick() -> Any:
    try:
        import copick
    except ImportError:
        raise InputError("copick projects need the copick library: pip install 'cryoseg[copick]'") from None
    return copick


@lru_cache(maxsize=4)
def open_project(config: str) -> Any:
    """The copick root of the project `config` (a JSON file), opened once per process."""
    copick = _require_copick()
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such copick config")
    try:
        return copick.from_file(str(path))
    except Exception as exc:  # copick raises JSON, pydantic and filesystem errors alike
        raise CorruptFileError(f"{path}: not a readable copick config ({type(exc).__name__}: {exc})") from None


def project_sources(config: str | Path, voxel_spacing: float, tomo_type: str,
                    runs: list[str] | None = None) -> list[CopickSource]:
    """The tomograms of type `tomo_type` at `voxel_spacing` Å of every run (or the named `runs`) of a project.

    Runs without such a tomogram are left out with one warning; named runs that do not exist are refused.
    """
    root = open_project(str(config))
    names = [r.name for r in root.runs]
    if runs:
        unknown = [r for r in runs if r not in names]
        if unknown:
            raise InputError(f"{config}: no run {', '.join(unknown[:3])} in the copick project ({len(names)} runs)")
        names = [n for n in names if n in runs]
    sources, missing = [], []
    for name in names:
        source = CopickSource(str(config), name, float(voxel_spacing), tomo_type)
        (sources if _tomogram(root, source) is not None else missing).append(source)
    if missing:
        logger.warning("%d run(s) have no %s tomogram at %g Å and are left out: %s", len(missing), tomo_type,
                       voxel_spacing, ", ".join(m.run for m in missing[:5]) + (", ..." if len(missing) > 5 else ""))
    if not sources:
        raise InputError(f"{config}: no run has a {tomo_type!r} tomogram at {voxel_spacing:g} Å")
    return sources


def read_tomogram(source: CopickSource) -> Volume:
    """The tomogram of `source`, with the voxel size its OME-Zarr metadata gives (else the voxel spacing)."""
    from .omezarr import read_omezarr

    tomogram = _tomogram(open_project(source.config), source)
    if tomogram is None:
        raise InputError(f"{source.config}: {source.describe()} does not exist")
    data, voxel_size, origin = read_omezarr(Path(f"{source.run}/{source.tomo_type}.zarr"), store=tomogram.zarr())
    if not all(v > 0 for v in voxel_size):
        voxel_size = (source.voxel_spacing,) * 3
    return Volume(data, voxel_size, origin)


def write_picks(source: CopickSource, target: CopickTarget, particles: Particles,
                voxel_size: tuple[float, float, float]) -> None:
    """Store `particles` (z, y, x voxels) as the picks of `target` in the run of `source` (replacing earlier picks of
    the same object, user and session)."""
    run = _run(source)
    _check_object(run.root, target.object_name, source.config)
    angstrom = np.asarray(particles.coords, np.float64).reshape(-1, 3)[:, ::-1] * np.asarray(voxel_size)[::-1]
    transforms = np.tile(np.eye(4), (len(particles), 1, 1))
    if particles.orientations is not None:
        transforms[:, :3, :3] = relion_angles_to_matrices(particles.orientations)
    picks = run.new_picks(target.object_name, target.session_id, target.user_id, exist_ok=True)
    picks.from_numpy(angstrom, transforms,
                     instance_ids=None if particles.instance_ids is None else np.asarray(particles.instance_ids),
                     scores=None if particles.scores is None else np.asarray(particles.scores, float))


def write_segmentation(source: CopickSource, target: CopickTarget, labels: Volume, instances: bool = True) -> None:
    """Store `labels` (Z, Y, X; instance ids, or 0/1 when `instances` is False) as a segmentation of the target
    object in the run of `source`, at the source's voxel spacing."""
    run = _run(source)
    _check_object(run.root, target.object_name, source.config)
    segmentation = run.new_segmentation(source.voxel_spacing, target.object_name, target.session_id,
                                        user_id=target.user_id, exist_ok=True, is_instance=instances)
    segmentation.from_numpy(np.asarray(labels.data))


def read_picks(source: CopickSource, target: CopickTarget, voxel_size: tuple[float, float, float]) -> np.ndarray:
    """(N, 3) z, y, x voxels of the picks of `target` in the run of `source` (empty when there are none)."""
    run = _run(source)
    found = run.get_picks(object_name=target.object_name, user_id=target.user_id, session_id=target.session_id)
    if not found:
        return np.zeros((0, 3))
    return found[0].full_positions()[:, ::-1] / np.asarray(voxel_size)


def _tomogram(root: Any, source: CopickSource) -> Any:
    """The copick tomogram of `source`, or None where the run, spacing or type does not exist."""
    run = root.get_run(source.run)
    spacing = run.get_voxel_spacing(source.voxel_spacing) if run is not None else None
    found = spacing.get_tomograms(source.tomo_type) if spacing is not None else []
    return found[0] if found else None


def _run(source: CopickSource) -> Any:
    run = open_project(source.config).get_run(source.run)
    if run is None:
        raise InputError(f"{source.config}: no run {source.run!r} in the copick project")
    return run


def check_target(config: str, target: CopickTarget) -> None:
    """Refuse a target object the project does not define (before any work: copick would refuse it at the end)."""
    _check_object(open_project(str(config)), target.object_name, str(config))


def _check_object(root: Any, name: str, config: str) -> None:
    objects = [o.name for o in root.config.pickable_objects]
    if name not in objects:
        raise InputError(f"{config}: the copick project has no pickable object {name!r} (it has "
                         f"{', '.join(objects[:6]) or 'none'}); add it to the config or name one with --object")
