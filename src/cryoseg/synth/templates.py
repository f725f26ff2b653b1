"""Particle templates: MRC density maps or built-in procedural shapes, at the tomogram's voxel size.

A template is centred on its centre of mass, cropped to its support, normalised so that its mean density
inside the label mask is 1 (protein contrast), and carries the label mask and a bounding radius used to
place particles without overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import InputError

logger = logging.getLogger(__name__)

MAP_SUFFIXES = (".mrc", ".map", ".rec")
# density below this fraction of the maximum is treated as empty when bounding the support
SUPPORT_FRACTION = 0.05


@dataclass
class Template:
    """One particle class's density at the tomogram's voxel size.

    Attributes:
        name: class name (built-in shape name or the map's file stem).
        source: "builtin:<name>" or the map's path.
        density: (z, y, x) float32, mean 1 inside the mask, 0 outside the support.
        mask: (z, y, x) float32 0/1 label mask: density above the threshold, cavities closed.
        center: (3,) z, y, x of the centre of mass in the arrays' index grid (the rotation centre).
        radius: voxels from `center` to the farthest density or mask voxel, plus half a voxel.
    """

    name: str
    source: str
    density: np.ndarray
    mask: np.ndarray
    center: np.ndarray
    radius: float

    @property
    def mask_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))


# ---- built-in shapes: signed distance functions in Å on (z, y, x) offsets -------------------------------

def _sphere(p: np.ndarray, center: tuple[float, float, float], r: float) -> np.ndarray:
    return np.sqrt(sum((p[i] - center[i]) ** 2 for i in range(3))) - r


def _ellipsoid(p: np.ndarray, center: tuple[float, float, float], axes: tuple[float, float, float]) -> np.ndarray:
    # first-order distance: exact on the axes, close enough elsewhere for a blob
    q = np.sqrt(sum(((p[i] - center[i]) / axes[i]) ** 2 for i in range(3)))
    return (q - 1.0) * min(axes)


def _capsule(p: np.ndarray, a: tuple[float, float, float], b: tuple[float, float, float], r: float) -> np.ndarray:
    a_, b_ = np.asarray(a, float), np.asarray(b, float)
    ab = b_ - a_
    ap = [p[i] - a_[i] for i in range(3)]
    h = np.clip(sum(ap[i] * ab[i] for i in range(3)) / float(ab @ ab), 0.0, 1.0)
    return np.sqrt(sum((ap[i] - h * ab[i]) ** 2 for i in range(3))) - r


def _ribosome(p: np.ndarray) -> np.ndarray:
    # large subunit, flattened small subunit beside it, and a stalk: asymmetric, ~240 Å across
    large = _ellipsoid(p, (0.0, 0.0, 20.0), (85.0, 90.0, 90.0))
    small = _ellipsoid(p, (8.0, 5.0, -70.0), (65.0, 80.0, 45.0))
    stalk = _capsule(p, (20.0, 55.0, 35.0), (30.0, 100.0, 50.0), 20.0)
    return np.minimum(np.minimum(large, small), stalk)


def _shell(p: np.ndarray) -> np.ndarray:
    # closed hollow sphere (a proteasome/ferritin stand-in): 150 Å across, 30 Å wall
    outer = _sphere(p, (0.0, 0.0, 0.0), 75.0)
    return np.maximum(outer, -_sphere(p, (0.0, 0.0, 0.0), 45.0))


def _dumbbell(p: np.ndarray) -> np.ndarray:
    # two globes joined by a thin rod, ~230 Å long
    ends = np.minimum(_sphere(p, (0.0, 0.0, -75.0), 40.0), _sphere(p, (0.0, 0.0, 75.0), 40.0))
    return np.minimum(ends, _capsule(p, (0.0, 0.0, -75.0), (0.0, 0.0, 75.0), 18.0))


def _rod(p: np.ndarray) -> np.ndarray:
    return _capsule(p, (0.0, 0.0, -90.0), (0.0, 0.0, 90.0), 30.0)


def _globule(p: np.ndarray) -> np.ndarray:
    return _ellipsoid(p, (0.0, 0.0, 0.0), (30.0, 36.0, 46.0))


# name -> (signed distance in Å, half-extent in Å of a box that holds it)
BUILTIN_SHAPES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    "ribosome": (_ribosome, 130.0),
    "shell": (_shell, 85.0),
    "dumbbell": (_dumbbell, 125.0),
    "rod": (_rod, 140.0),
    "globule": (_globule, 55.0),
}


def builtin_density(name: str, voxel_size: float) -> np.ndarray:
    """Density (z, y, x) float32 of a built-in shape at `voxel_size` Å: 1 inside, a one-voxel soft edge."""
    sdf, half = BUILTIN_SHAPES[name]
    n = int(np.ceil(half / voxel_size)) + 3
    axis = (np.arange(2 * n + 1) - n) * voxel_size
    p = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))
    density = np.clip(0.5 - sdf(p) / voxel_size, 0.0, 1.0)
    # a little blur, as a map filtered to the voxel size would have
    return ndimage.gaussian_filter(density, 0.5).astype(np.float32)


# ---- loading ------------------------------------------------------------------------------------------

def resolve_template_paths(specs: Sequence[str]) -> list[tuple[str, Path | None]]:
    """Expand template specs into (name, path) pairs: path None for built-ins, folders to their maps (sorted).

    Raises:
        InputError: a spec that is neither a built-in name nor an existing file, or a folder without maps.
    """
    out: list[tuple[str, Path | None]] = []
    for spec in specs:
        key = str(spec).strip()
        if key.lower().startswith("builtin:"):
            key = key.split(":", 1)[1]
        if key.lower() in BUILTIN_SHAPES and not Path(spec).exists():
            out.append((key.lower(), None))
            continue
        path = Path(spec)
        if path.is_dir():
            maps = sorted(p for p in path.iterdir() if p.suffix.lower() in MAP_SUFFIXES and p.is_file())
            if not maps:
                raise InputError(f"template folder {path} holds no density maps ({', '.join(MAP_SUFFIXES)})")
            out.extend((p.stem, p) for p in maps)
        elif path.is_file():
            out.append((path.stem, path))
        else:
            raise InputError(f"template {spec}: no such file or folder, and not a built-in shape "
                             f"({', '.join(BUILTIN_SHAPES)})")
    return out


def load_templates(specs: Sequence[str], voxel_size: float, mask_threshold: float,
                   template_voxel_size: float | None = None) -> list[Template]:
    """Load every template spec (built-in name, MRC file or folder) at the tomogram's `voxel_size` Å."""
    templates: list[Template] = []
    seen: dict[str, int] = {}
    for name, path in resolve_template_paths(specs):
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name}_{seen[name]}"
        if path is None:
            density, source = builtin_density(name, voxel_size), f"builtin:{name}"
        else:
            density, source = _read_map(path, voxel_size, template_voxel_size), str(path)
        templates.append(prepare_template(unique, source, density, mask_threshold))
    return templates


def _read_map(path: Path, voxel_size: float, template_voxel_size: float | None) -> np.ndarray:
    """A map's density (z, y, x) resampled from its own voxel size to `voxel_size` Å."""
    from ..io.volumes import read_volume

    vol = read_volume(path, voxel_size=template_voxel_size, mmap=False)
    map_vs = np.asarray(vol.voxel_size, dtype=np.float64)
    if not np.all(np.isfinite(map_vs)) or np.any(map_vs <= 0):
        raise InputError(f"template {path}: the header gives no voxel size; set template_voxel_size "
                         "(CLI: --template-voxel-size)")
    data = np.asarray(vol.data, dtype=np.float32)
    factor = map_vs / voxel_size
    if not np.allclose(factor, 1.0, rtol=1e-4):
        logger.info("template %s: resampling from %s Å to %.4g Å voxels", path, tuple(map_vs), voxel_size)
        # smooth first when shrinking so the coarser grid does not alias
        sigma = np.where(factor < 1.0, 0.4 / np.maximum(factor, 1e-6), 0.0)
        if np.any(sigma > 0):
            data = ndimage.gaussian_filter(data, sigma)
        out_shape = np.maximum(np.round(np.asarray(data.shape) * factor).astype(int), 1)
        data = ndimage.zoom(data, out_shape / np.asarray(data.shape), order=1, grid_mode=True, mode="grid-constant")
    if not np.isfinite(data).all() or data.max() <= 0:
        raise InputError(f"template {path}: the map has no positive density")
    return data.astype(np.float32)


def _closed_mask(mask: np.ndarray) -> np.ndarray:
    """Fill cavities, also those open along one axis (a barrel): 3D fill, then slice-wise fills along z, y, x."""
    filled = ndimage.binary_fill_holes(mask)
    for axis in range(3):
        structure = np.zeros((3, 3, 3), dtype=bool)
        index = [slice(None)] * 3
        index[axis] = 1
        structure[tuple(index)] = ndimage.generate_binary_structure(2, 1)
        filled |= ndimage.binary_fill_holes(mask, structure=structure)
    return filled


def prepare_template(name: str, source: str, density: np.ndarray, mask_threshold: float) -> Template:
    """Centre, mask, crop and normalise a raw density (z, y, x) into a `Template`.

    Args:
        name: class name.
        source: where it came from (for the record).
        density: (z, y, x) raw density, larger = more mass; negative values are clipped to 0.
        mask_threshold: the label mask is the density above this fraction of the maximum, cavities closed.
    """
    density = np.maximum(np.asarray(density, dtype=np.float32), 0.0)
    peak = float(density.max())
    if peak <= 0:
        raise InputError(f"template {source}: the map has no positive density")
    core = density > mask_threshold * peak
    labels, _ = ndimage.label(core)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    # the molecule (all sizeable pieces: a complex may fall apart at the threshold); specks of noise are not
    core = np.isin(labels, np.flatnonzero(sizes >= 0.1 * sizes.max()))
    mask = _closed_mask(core)
    # support: faint density connected to the molecule (noise elsewhere in the box is dropped)
    support_labels, _ = ndimage.label(density > SUPPORT_FRACTION * peak)
    keep = np.unique(support_labels[core])
    support = np.isin(support_labels, keep[keep > 0]) | mask
    support = ndimage.binary_dilation(support, iterations=1)
    density = np.where(support, density, 0.0).astype(np.float32)

    center = np.asarray(ndimage.center_of_mass(np.where(core, density, 0.0)), dtype=np.float64)
    inside = np.argwhere(mask)
    if not mask[tuple(np.round(center).astype(int))]:
        # a complex of separate parts: its centre of mass lies between them; use the nearest molecule voxel,
        # so every particle's centre lies in its own label
        center = inside[np.argmin(((inside - center) ** 2).sum(axis=1))].astype(np.float64)
    idx = np.argwhere(support)
    radius = float(np.sqrt(((idx - center) ** 2).sum(axis=1)).max()) + 0.5
    # crop to a cube around the centre that holds the support, keeping the grid (no resampling)
    half = int(np.ceil(radius)) + 1
    lo = np.floor(center).astype(int) - half
    hi = np.floor(center).astype(int) + half + 2
    pad_lo = np.maximum(-lo, 0)
    pad_hi = np.maximum(hi - np.asarray(density.shape), 0)
    if np.any(pad_lo) or np.any(pad_hi):
        widths = list(zip(pad_lo, pad_hi))
        density = np.pad(density, widths)
        mask = np.pad(mask, widths)
        lo, hi, center = lo + pad_lo, hi + pad_lo, center + pad_lo
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    density, mask = density[box], mask[box]
    center = center - lo
    density /= float(density[mask].mean())
    return Template(name=name, source=source, density=np.ascontiguousarray(density, dtype=np.float32),
                    mask=np.ascontiguousarray(mask, dtype=np.float32), center=center, radius=radius)
