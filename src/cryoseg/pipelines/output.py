"""Writing a segmentation or pick to a folder: volumes, coordinate files, an instance table, a preview, a report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path, staged_folder
from ..io.particles import Particles
from ..io.report import REPORT, write_report
from ..io.volume import Volume
from ..segment3d.records import InstanceInfo

logger = logging.getLogger(__name__)

VOLUME_FORMATS = {"mrc": ".mrc", "zarr": ".ome.zarr"}
DEFAULT_VOLUME_FORMAT = "mrc"
# (file name, write_particles format): RELION 4 (voxels), RELION 5 (centred Å), CSV, copick JSON.
PARTICLE_FILES = (("particles.star", "star"), ("particles_relion5.star", "star5"), ("particles.csv", "csv"),
                  ("particles_copick.json", "copick"))


def check_volume_format(volume_format: str) -> str:
    """Return the file suffix of a volume format, or raise InputError."""
    if volume_format not in VOLUME_FORMATS:
        raise InputError(f"unknown volume format {volume_format!r}; choose one of {sorted(VOLUME_FORMATS)}")
    return VOLUME_FORMATS[volume_format]


def write_outputs(outdir: str | Path, labels: Volume, particles: Particles, instances: Sequence[InstanceInfo],
                  report: dict[str, Any], tomogram: Volume | None = None, point: np.ndarray | None = None,
                  volume_format: str = DEFAULT_VOLUME_FORMAT, inputs: Sequence[str | Path] = (),
                  extra_columns: dict[str, np.ndarray] | None = None,
                  tomo_name: str | None = None,
                  extra_files: dict[str, tuple[str, Callable[[Path, tuple[Path, ...]], Any]]] | None = None,
                  ) -> dict[str, Path]:
    """Write every output of a run into `outdir` and return {name: path}.

    The files are built in a staging folder and moved in with report.json last (`io.atomic.staged_folder`): a
    folder without report.json is an incomplete run.

    Args:
        labels: int32 instance labels (Z, Y, X) with the tomogram's voxel size (kept in every volume written).
        particles: one row per kept instance, z, y, x voxels.
        instances: every prompt/proposal record (written to instances.csv).
        report: JSON-able content of report.json (files and versions are added).
        tomogram: the tomogram, for the preview PNG (skipped when None).
        point: (3,) z, y, x through which the preview is cut (default: the first particle, else the centre).
        volume_format: "mrc" or "zarr".
        inputs: files that must never be overwritten.
        extra_columns: per-particle columns for particles_scores.csv (e.g. similarity and predicted IoU).
        tomo_name: tomogram name in the coordinate files (rlnTomoName, copick run_name), which RELION 5 needs
            to find the picks' tomogram; default: the tomogram's file name without its extension.
        extra_files: more files, {key: (file name, write(path, inputs))} (e.g. a pick's query.npz).
    """
    suffix = check_volume_format(volume_format)
    outdir = Path(outdir)
    inputs = tuple(inputs) + ((tomogram.source,) if tomogram is not None and tomogram.source else ())
    with staged_folder(outdir, REPORT, inputs) as stage:
        files = _write_all(stage, suffix, labels, particles, instances, report, tomogram, point, inputs,
                           extra_columns, tomo_name, extra_files or {})
    logger.info("wrote %d files to %s", len(files), outdir)
    return {k: outdir / p.relative_to(stage) for k, p in files.items()}


def _write_all(outdir: Path, suffix: str, labels: Volume, particles: Particles, instances: Sequence[InstanceInfo],
               report: dict[str, Any], tomogram: Volume | None, point: np.ndarray | None,
               inputs: Sequence[str | Path], extra_columns: dict[str, np.ndarray] | None,
               tomo_name: str | None, extra_files: dict[str, tuple[str, Callable[[Path, tuple[Path, ...]], Any]]]
               ) -> dict[str, Path]:
    """Write the outputs into `outdir` (the staging folder); arguments as `write_outputs`."""
    from ..io.volumes import write_volume

    files: dict[str, Path] = {}
    mask = Volume((labels.data > 0).astype(np.uint8), labels.voxel_size, labels.origin)
    files["instances"] = write_volume(labels, outdir / f"instances{suffix}", inputs=inputs)
    files["mask"] = write_volume(mask, outdir / f"mask{suffix}", inputs=inputs)
    voxel_size = labels.voxel_size
    if tomo_name is None and tomogram is not None and tomogram.source:
        tomo_name = tomogram_name(tomogram.source)
    files.update(write_particle_files(outdir, particles, voxel_size, labels.shape, inputs, tomo_name))
    files["instances_table"] = _write_table(outdir / "instances.csv", [i.as_row() for i in instances], inputs)
    if extra_columns:
        rows = [{"z": c[0], "y": c[1], "x": c[2], **{k: v[n] for k, v in extra_columns.items()}}
                for n, c in enumerate(particles.coords)]
        files["scores_table"] = _write_table(outdir / "particles_scores.csv", rows, inputs)
    for key, (name, write) in extra_files.items():
        write(outdir / name, tuple(inputs))
        files[key] = outdir / name
    if tomogram is not None:
        from ..viz import save_preview

        if point is None:
            point = particles.coords[0] if len(particles) else None
        files["preview"] = save_preview(tomogram, outdir / "preview.png", point=point, labels=labels.data,
                                        picks=particles.coords, title=f"{len(particles)} instance(s)")
    report = {**report, "voxel_size": list(voxel_size),
              "files": {k: str(v.name) for k, v in files.items()}}
    files["report"] = write_report(outdir / REPORT, **report)
    return files


def write_particle_files(outdir: Path, particles: Particles, voxel_size: tuple[float, float, float],
                         shape: tuple[int, ...], inputs: Sequence[str | Path] = (), tomo_name: str | None = None
                         ) -> dict[str, Path]:
    """Write `particles` (z, y, x voxels of a tomogram of `shape` and `voxel_size` Å) in every coordinate format
    cryoseg writes (`PARTICLE_FILES`) into `outdir`; returns {file name: path}."""
    from ..io.coords import write_particles

    return {name: write_particles(particles, outdir / name, fmt=fmt, voxel_size=voxel_size, shape=shape,
                                  inputs=inputs, tomo_name=tomo_name) for name, fmt in PARTICLE_FILES}


def write_probabilities(outdir: Path, probabilities: np.ndarray, class_names: Sequence[str], labels: Volume,
                        inputs: Sequence[str | Path] = ()) -> dict[str, Path]:
    """Write one probability_<class>.mrc per class into `outdir`, on `labels`' grid (voxel size, origin).

    Args:
        probabilities: (K + 1, Z, Y, X) float32, background first.
        class_names: the K foreground classes' names.

    Returns:
        {"probability_<class>": path}.
    """
    from ..io.volumes import write_volume

    return {f"probability_{name}": write_volume(Volume(probabilities[k], labels.voxel_size, labels.origin),
                                                outdir / f"probability_{name}.mrc", inputs=inputs)
            for k, name in enumerate(("background", *class_names))}


def tomogram_name(path: str | Path) -> str:
    """A tomogram's name for coordinate files: its file name without the extension ("TS_01.ome.zarr" -> "TS_01")."""
    name = Path(path).name
    for suffix in (".ome.zarr", Path(name).suffix):
        if suffix and name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return "_".join(name.split())  # STAR values are whitespace-separated


def _write_table(path: Path, rows: list[dict[str, Any]], inputs: Sequence[str | Path]) -> Path:
    import pandas as pd

    with atomic_path(path, inputs=inputs) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return path
