"""`SimulationConfig`: every parameter of the simulator and its default, defined once here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

# Built-in procedural shapes need no files, so the default run works on a fresh machine.
DEFAULT_TEMPLATES: tuple[str, ...] = ("ribosome", "shell", "dumbbell")
# Counts used where `particles`, `vesicles` or `filaments` is None, for the default 128³ tomogram. A smaller
# volume gets proportionally fewer (see `SimulationConfig.default_counts`), so a small `shape` works with
# the defaults; a larger one keeps these counts.
REFERENCE_SHAPE: tuple[int, int, int] = (128, 128, 128)
REFERENCE_COUNTS: dict[str, int] = {"particles": 30, "vesicles": 2, "filaments": 1}


@dataclass
class SimulationConfig:
    """Parameters of one simulated tomogram. Lengths are in Å unless the name says voxels.

    Attributes:
        shape: tomogram size (z, y, x) in voxels; z is the beam direction at zero tilt (slab thickness).
        voxel_size: Å per voxel (isotropic).
        seed: random seed; the same config and seed give a bit-identical result.
        templates: particle classes, in label order (label 2 is the first): built-in shape names
            ("ribosome", "shell", "dumbbell", "rod", "globule"), MRC density maps, or folders of maps.
        particles: total number of particles, split as evenly as possible over the classes. None: 30, fewer
            for a volume smaller than 128³ (see `default_counts`).
        particles_per_class: number per class (one entry per class); overrides `particles`.
        density: particles per µm³ per class; overrides `particles` (not together with `particles_per_class`).
        template_voxel_size: Å per voxel of the MRC templates, replacing their header value.
        mask_threshold: a particle's label mask is its density above this fraction of the template maximum
            (cavities inside closed, so the centre belongs to the particle).
        vesicles: number of vesicles (lipid bilayer spheres and ellipsoids). None: 2, fewer (or none) for a
            volume smaller than 128³, so that everything fits.
        vesicle_radius: (min, max) vesicle radius in Å (the largest semi-axis for ellipsoids).
        ellipsoid_fraction: fraction of vesicles that are ellipsoids rather than spheres.
        max_elongation: largest semi-axis ratio of an ellipsoidal vesicle.
        bilayer_thickness: distance between the two leaflets' head-group peaks, Å.
        leaflet_sigma: Gaussian width of each leaflet's density peak, Å.
        membrane_contrast: peak density of a leaflet relative to protein (protein is 1).
        filaments: number of straight filaments (tubes) crossing the volume. None: 1, or none for a volume
            much smaller than 128³, so that everything fits.
        filament_radius: outer radius of a filament, Å.
        filament_wall: wall thickness of a filament, Å; at least the radius gives a solid rod.
        tilt_range: (first, last) tilt angle in degrees about the y axis.
        tilt_step: tilt increment in degrees.
        ctf: apply the contrast transfer function to each projection.
        voltage: acceleration voltage, kV.
        cs: spherical aberration, mm.
        defocus: defocus in µm, positive = underfocus.
        amplitude_contrast: fraction of amplitude contrast (0..1).
        bfactor: B-factor of the CTF envelope, Å² (0 = no envelope).
        phase_flip: correct the CTF by phase flipping before reconstruction (as most pipelines do).
        noise: add Gaussian noise to the projections.
        snr: signal-to-noise ratio of each projection image: variance of the noiseless image over the
            variance of the noise, measured where the volume projects.
        wbp_cutoff: low-pass cut-off of the reconstruction filter, cycles per voxel (0.5 = Nyquist).
        invert_contrast: density bright instead of dark (raw tomograms show density dark).
        threads: worker threads (None = every core this process may use); the result does not depend on it.
    """

    shape: tuple[int, int, int] = (128, 128, 128)
    voxel_size: float = 10.0
    seed: int = 0
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    particles: int | None = None
    particles_per_class: tuple[int, ...] | None = None
    density: float | None = None
    template_voxel_size: float | None = None
    mask_threshold: float = 0.3
    vesicles: int | None = None
    vesicle_radius: tuple[float, float] = (150.0, 280.0)
    ellipsoid_fraction: float = 0.5
    max_elongation: float = 1.4
    bilayer_thickness: float = 38.0
    leaflet_sigma: float = 6.0
    membrane_contrast: float = 1.0
    filaments: int | None = None
    filament_radius: float = 125.0
    filament_wall: float = 45.0
    tilt_range: tuple[float, float] = (-60.0, 60.0)
    tilt_step: float = 3.0
    ctf: bool = True
    voltage: float = 300.0
    cs: float = 2.7
    defocus: float = 3.0
    amplitude_contrast: float = 0.07
    bfactor: float = 0.0
    phase_flip: bool = True
    noise: bool = True
    snr: float = 0.5
    wbp_cutoff: float = 0.4
    invert_contrast: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        self.shape = _as_shape(self.shape)
        self.templates = (self.templates,) if isinstance(self.templates, (str, Path)) else tuple(
            str(t) for t in self.templates)
        if self.particles_per_class is not None:
            self.particles_per_class = tuple(int(n) for n in self.particles_per_class)
        self.vesicle_radius = _pair(self.vesicle_radius, "vesicle_radius")
        self.tilt_range = _pair(self.tilt_range, "tilt_range")
        self.validate()

    def validate(self) -> None:
        """Raise `InputError` naming the first parameter that is out of range."""
        _positive("voxel_size", self.voxel_size)
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed}")
        if not self.templates:
            raise InputError("at least one particle template (class) is needed")
        if self.particles is not None and self.particles < 0:
            raise InputError(f"particles must be zero or more, got {self.particles}")
        if self.particles_per_class is not None:
            if self.density is not None:
                raise InputError("give either particles_per_class or density, not both")
            if any(n < 0 for n in self.particles_per_class):
                raise InputError(f"particles_per_class must be zero or more, got {self.particles_per_class}")
        if self.density is not None and not (math.isfinite(self.density) and self.density >= 0):
            raise InputError(f"density must be zero or more particles per µm³, got {self.density}")
        if self.template_voxel_size is not None:
            _positive("template_voxel_size", self.template_voxel_size)
        if not 0.0 < self.mask_threshold < 1.0:
            raise InputError(f"mask_threshold must lie between 0 and 1 (a fraction of the maximum), got "
                             f"{self.mask_threshold}")
        for name in ("vesicles", "filaments"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise InputError(f"{name} must be zero or more, got {getattr(self, name)}")
        lo, hi = self.vesicle_radius
        if not 0 < lo <= hi:
            raise InputError(f"vesicle_radius must be (min, max) with 0 < min <= max Å, got {self.vesicle_radius}")
        if not 0.0 <= self.ellipsoid_fraction <= 1.0:
            raise InputError(f"ellipsoid_fraction must lie in [0, 1], got {self.ellipsoid_fraction}")
        if self.max_elongation < 1.0:
            raise InputError(f"max_elongation must be at least 1, got {self.max_elongation}")
        for name in ("bilayer_thickness", "leaflet_sigma", "filament_radius", "filament_wall", "tilt_step",
                     "voltage"):
            _positive(name, getattr(self, name))
        if self.membrane_contrast < 0:
            raise InputError(f"membrane_contrast must be zero or more, got {self.membrane_contrast}")
        first, last = self.tilt_range
        if not (-90.0 < first <= last < 90.0):
            raise InputError(f"tilt_range must be (first, last) with -90 < first <= last < 90 degrees, got "
                             f"{self.tilt_range}")
        if self.cs < 0:
            raise InputError(f"cs (spherical aberration) must be zero or more mm, got {self.cs}")
        if not math.isfinite(self.defocus):
            raise InputError(f"defocus must be a finite number of µm, got {self.defocus}")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            raise InputError(f"amplitude_contrast must lie in [0, 1), got {self.amplitude_contrast}")
        if self.bfactor < 0:
            raise InputError(f"bfactor must be zero or more Å², got {self.bfactor}")
        if not (math.isfinite(self.snr) and self.snr > 0):
            raise InputError(f"snr must be a positive number, got {self.snr}")
        if not 0.0 < self.wbp_cutoff <= 0.5:
            raise InputError(f"wbp_cutoff must lie in (0, 0.5] cycles per voxel, got {self.wbp_cutoff}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be at least 1, got {self.threads}")

    def tilt_angles(self) -> np.ndarray:
        """(n,) tilt angles in degrees, from the first to the last of `tilt_range` every `tilt_step`."""
        first, last = self.tilt_range
        n = int(math.floor((last - first) / self.tilt_step + 1e-6)) + 1
        return first + self.tilt_step * np.arange(n, dtype=np.float64)

    def default_counts(self) -> dict[str, int]:
        """Particles, vesicles and filaments for the fields left None, in proportion to the volume.

        From 128³ voxels up these are REFERENCE_COUNTS (30, 2, 1). A smaller volume keeps the default
        tomogram's crowding: particles and vesicles scale with the volume (at least one particle), filaments
        with the volume over their length (the in-plane diagonal). `simulate` may raise default particles to one
        per class and drop default vesicles and filaments further, so that everything fits (see
        `scene.resolve_counts`).
        """
        ref = np.asarray(REFERENCE_SHAPE, dtype=np.float64)
        shape = np.asarray(self.shape, dtype=np.float64)
        volume = float(np.prod(shape) / np.prod(ref))
        length = float(np.linalg.norm(shape[1:]) / np.linalg.norm(ref[1:]))
        if volume >= 1.0:
            scale = dict.fromkeys(REFERENCE_COUNTS, 1.0)
        else:
            scale = {"particles": volume, "vesicles": volume, "filaments": min(1.0, volume / length)}
        out = {}
        for name, reference in REFERENCE_COUNTS.items():
            value = getattr(self, name)
            if value is None:
                value = math.floor(reference * scale[name] + 0.5)  # round half up
                value = max(value, 1) if name == "particles" else value
            out[name] = int(value)
        return out

    def class_counts(self, n_classes: int) -> list[int]:
        """Particles per class for `n_classes` classes, from `particles_per_class`, `density` or `particles`."""
        if self.particles_per_class is not None:
            if len(self.particles_per_class) != n_classes:
                raise InputError(f"particles_per_class has {len(self.particles_per_class)} entries but there are "
                                 f"{n_classes} particle classes")
            return list(self.particles_per_class)
        if self.density is not None:
            volume_um3 = math.prod(self.shape) * (self.voxel_size * 1e-4) ** 3
            return [int(round(self.density * volume_um3))] * n_classes
        total = self.particles if self.particles is not None else self.default_counts()["particles"]
        base, extra = divmod(total, n_classes)
        return [base + (1 if i < extra else 0) for i in range(n_classes)]


def _as_shape(shape: object) -> tuple[int, int, int]:
    try:
        values = [float(s) for s in shape]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"shape must be three positive integers (z, y, x), got {shape!r}") from None
    if len(values) != 3 or any(not v.is_integer() or v < 1 for v in values):
        raise InputError(f"shape must be three positive integers (z, y, x), got {shape!r}")
    out = tuple(int(v) for v in values)
    if min(out) < 16:
        raise InputError(f"shape must be at least 16 voxels along every axis, got {out}")
    return out  # type: ignore[return-value]


def _pair(value: object, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be two numbers, got {value!r}") from None
    return lo, hi


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive number, got {value}")
