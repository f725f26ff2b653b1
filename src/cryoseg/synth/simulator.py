"""Orchestration: scene -> density and ground truth -> tilt series -> CTF -> noise -> WBP tomogram."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.particles import Particles
from ..io.report import REPORT, StageTimer
from ..io.volume import Volume
from ..progress import track
from ..resources import available_memory_bytes, format_bytes
from .config import SimulationConfig
from .ctf import CTFParams, ctf_grid, delocalisation
from .fourier import apply_filter, padded_shape
from .membranes import MEMBRANE_LABEL, BilayerProfile, render_filament, render_vesicle
from .noise import add_noise, noise_sigma
from .parallel import available_threads
from .reconstruct import weighted_back_projection
from .render import render_particles
from .rotation import matrices_to_euler
from .scene import build_scene, resolve_counts
from .templates import load_templates
from .tilt import detector_width, footprints, project

logger = logging.getLogger(__name__)

FILES = {"tomogram": "tomogram.mrc", "labels": "labels.mrc", "instances": "instances.mrc",
         "particles_csv": "particles.csv", "particles_star": "particles.star", "report": REPORT}
# independent random streams, so e.g. switching noise off leaves the scene unchanged
_STREAMS = ("filaments", "vesicles", "particles", "rotations", "noise")


@dataclass
class Simulation:
    """A simulated tomogram and its exact ground truth.

    Attributes:
        tomogram: (Z, Y, X) float32 reconstruction, zero mean and unit variance; density is dark unless
            `config.invert_contrast`.
        labels: (Z, Y, X) uint8 (int16 past 255 labels): 0 background, 1 membrane, 2.. particle classes in
            template order, then "filament" when there are filaments.
        instances: (Z, Y, X) int32: particles 1..N (row i of `particles` is i + 1), then vesicles, then filaments.
        particles: centres (z, y, x voxels), classes (label ids), instance ids, orientations (RELION rot, tilt,
            psi: template-to-particle), class_names.
        config: the parameters used, with the particle, vesicle and filament counts that defaults (None) became.
        density: (Z, Y, X) float32 noiseless density before imaging (protein 1, water 0).
        label_names: label id -> name for every id in `labels`.
        tilt_angles: (n,) tilt angles in degrees.
        info: what the report holds besides the config (templates, noise level, counts, timings in seconds).
    """

    tomogram: Volume
    labels: Volume
    instances: Volume
    particles: Particles
    config: SimulationConfig
    density: Volume
    label_names: dict[int, str] = field(default_factory=dict)
    tilt_angles: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict = field(default_factory=dict)

    def save(self, outdir: str | Path) -> dict[str, Path]:
        """Write tomogram.mrc, labels.mrc, instances.mrc, particles.csv, particles.star and report.json.

        Template maps the simulation read are never overwritten. Returns the path of each file by key
        (tomogram, labels, instances, particles_csv, particles_star, report).
        """
        from ..io.atomic import check_not_input, staged_folder

        outdir = Path(outdir)
        inputs = [t["source"] for t in self.info.get("templates", []) if not t["source"].startswith("builtin:")]
        for name in FILES.values():  # refuse before writing anything, so a refusal leaves no partial set
            check_not_input(outdir / name, inputs)
        with staged_folder(outdir, REPORT, inputs) as stage:
            paths = self._write(stage, inputs)
        return {k: outdir / p.name for k, p in paths.items()}

    def _write(self, outdir: Path, inputs: list[str]) -> dict[str, Path]:
        """Write every file of `save` into `outdir` (a staging folder), the report last."""
        from ..io.coords import write_particles
        from ..io.report import write_report
        from ..io.volumes import write_volume

        paths: dict[str, Path] = {}
        for key in ("tomogram", "labels", "instances"):
            paths[key] = write_volume(getattr(self, key), outdir / FILES[key], inputs=inputs)
        vs, shape = self.config.voxel_size, self.config.shape
        paths["particles_csv"] = write_particles(self.particles, outdir / FILES["particles_csv"], fmt="csv",
                                                 voxel_size=vs, shape=shape, inputs=inputs)
        paths["particles_star"] = write_particles(self.particles, outdir / FILES["particles_star"], fmt="star",
                                                  voxel_size=vs, shape=shape, inputs=inputs)
        paths["report"] = outdir / REPORT
        write_report(paths["report"], kind="simulation", seed=self.config.seed, config=asdict(self.config),
                     label_names=self.label_names, class_names=self.particles.class_names,
                     tilt_angles=self.tilt_angles, **self.info,
                     files={k: p.name for k, p in paths.items()})
        return paths


# Peak memory per voxel of the volume: 20 bytes measured at 200x512x512 (benchmarks/README.md), with a margin.
BYTES_PER_VOXEL = 24


def _check_memory(config: SimulationConfig) -> None:
    """Refuse a volume whose simulation cannot fit in the memory available now, before allocating anything."""
    needed = math.prod(config.shape) * BYTES_PER_VOXEL
    available = available_memory_bytes()
    if available is not None and needed > available:
        shape = "x".join(map(str, config.shape))
        raise InputError(f"simulating {shape} voxels needs about {format_bytes(needed)} of memory but "
                         f"{format_bytes(available)} is available; choose a smaller --shape")


def simulate(config: SimulationConfig | None = None) -> Simulation:
    """Simulate a tomogram with exact ground truth. The same config (seed included) gives identical output.

    Raises:
        InputError: bad parameters, missing template files, or more objects than fit without overlap.
    """
    config = SimulationConfig() if config is None else config
    config.validate()
    _check_memory(config)
    threads = available_threads(config.threads)
    timer = StageTimer()
    streams = np.random.SeedSequence(config.seed).spawn(len(_STREAMS))
    rngs = {name: np.random.default_rng(s) for name, s in zip(_STREAMS, streams)}

    with timer("templates"):
        templates = load_templates(config.templates, config.voxel_size, config.mask_threshold,
                                   config.template_voxel_size)
    config = resolve_counts(config, templates)  # default counts fitted to the volume; recorded as used
    counts = config.class_counts(len(templates))
    with timer("placement"):
        scene = build_scene(config, templates, counts, rngs)

    class_labels = [MEMBRANE_LABEL + 1 + i for i in range(len(templates))]
    label_names = {0: "background", MEMBRANE_LABEL: "membrane"}
    label_names.update({lab: t.name for lab, t in zip(class_labels, templates)})
    filament_label = class_labels[-1] + 1
    if config.filaments:
        label_names[filament_label] = "filament"
    label_dtype = np.uint8 if max(label_names) <= 255 else np.int16

    nz, ny, nx = config.shape
    with timer("render"):
        # density lives as (z, x, y) so the projector reads (z, x) rows with y contiguous; `density` is its z, y, x view
        buffer = np.zeros((nz, nx, ny), dtype=np.float32)
        density = buffer.transpose(0, 2, 1)
        labels = np.zeros(config.shape, dtype=label_dtype)
        instances = np.zeros(config.shape, dtype=np.int32)
        n_particles = len(scene.centers)
        render_particles(scene.centers, scene.class_index, scene.rotations, templates, class_labels, density, labels,
                         instances, 1, threads)
        profile = BilayerProfile.from_config(config)
        for j, vesicle in enumerate(track(scene.vesicles, "drawing vesicles")):
            render_vesicle(vesicle, profile, density, labels, instances, n_particles + 1 + j)
        first_filament = n_particles + len(scene.vesicles) + 1
        for j, filament in enumerate(scene.filaments):
            render_filament(filament, density, labels, instances, filament_label, first_filament + j)

    angles = config.tilt_angles()
    width = detector_width(config.shape, angles)
    with timer("projection"):
        images = project(buffer, angles, width, threads)
    ctf = CTFParams.from_config(config)
    pad = max(16, 2 * delocalisation(config.voxel_size, ctf) + 8)
    with timer("ctf"):
        if config.ctf:
            ctf_padded = padded_shape((ny, width), pad)
            images = apply_filter(images, ctf_grid(ctf_padded, config.voxel_size, ctf), ctf_padded, threads)
        else:
            images *= -1.0  # ideal transfer keeps the physical sign: density dark
    sigma = 0.0
    with timer("noise"):
        if config.noise:
            sigma = noise_sigma(images, footprints(config.shape, angles, width), config.snr)
            add_noise(images, sigma, rngs["noise"])
    with timer("reconstruction"):
        wbp_padded = (padded_shape((ny, width), pad)[0], padded_shape((ny, width), width)[1])
        transfer = None
        if config.ctf and config.phase_flip:
            # multiply by -sign(CTF): every frequency keeps the low-frequency (dark) sign, noise included
            transfer = -np.sign(ctf_grid(wbp_padded, config.voxel_size, ctf))
        reconstruction = weighted_back_projection(images, angles, config.shape, wbp_padded, threads,
                                                  config.wbp_cutoff, transfer)
        del images
        tomogram = _normalise(reconstruction.transpose(0, 2, 1), config.invert_contrast)
        del reconstruction

    class_names = {lab: t.name for lab, t in zip(class_labels, templates)}
    order = np.arange(n_particles)
    particles = Particles(coords=scene.centers, classes=np.asarray(class_labels)[scene.class_index],
                          instance_ids=order + 1, orientations=matrices_to_euler(scene.rotations),
                          class_names=class_names)
    vs = (config.voxel_size,) * 3
    info = {
        "templates": [{"name": t.name, "source": t.source, "label": lab, "count": c, "radius_voxels": t.radius,
                       "mask_voxels": t.mask_voxels} for t, lab, c in zip(templates, class_labels, counts)],
        "vesicles": [{"instance": n_particles + 1 + j, "center_zyx": v.center, "semi_axes_zyx": v.axes}
                     for j, v in enumerate(scene.vesicles)],
        "filaments": [{"instance": first_filament + j, "point_zyx": f.point, "direction_zyx": f.direction,
                       "radius_voxels": f.radius, "inner_radius_voxels": f.inner_radius}
                      for j, f in enumerate(scene.filaments)],
        "detector_width": width,
        "noise_sigma": sigma,
        "contrast": "bright" if config.invert_contrast else "dark",
        "threads": threads,
        "timings": dict(timer.seconds),
    }
    logger.info("simulated %s tomogram: %d particles, %d vesicles, %d filaments (%.1f s)", config.shape, n_particles,
                len(scene.vesicles), len(scene.filaments), sum(timer.seconds.values()))
    return Simulation(
        tomogram=Volume(tomogram, vs),
        labels=Volume(labels, vs),
        instances=Volume(instances, vs),
        particles=particles,
        config=config,
        density=Volume(density, vs),
        label_names=label_names,
        tilt_angles=angles,
        info=info,
    )


def _normalise(volume: np.ndarray, invert: bool) -> np.ndarray:
    """A C-contiguous float32 copy of `volume` (Z, Y, X) with zero mean and unit variance (sign flipped if `invert`)."""
    out = np.ascontiguousarray(volume, dtype=np.float32)
    # statistics a few planes at a time: a whole-volume float64 temporary would double the peak memory
    total, total_sq = 0.0, 0.0
    for z0 in range(0, out.shape[0], 16):
        slab = out[z0:z0 + 16].astype(np.float64)
        total += float(slab.sum())
        total_sq += float(np.square(slab).sum())
    mean = total / out.size
    std = float(np.sqrt(max(total_sq / out.size - mean * mean, 0.0)))
    out -= np.float32(mean)
    out *= np.float32((-1.0 if invert else 1.0) / (std if std > 0 else 1.0))
    return out
