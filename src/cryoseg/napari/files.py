"""napari readers and writers (npe2 commands): tomograms and label maps, particle coordinates.

Readers: MRC, TIFF and OME-Zarr volumes (an image layer; integer data, a label map, becomes a labels layer) and the
coordinate files cryoseg reads (STAR 4/5, CSV, copick JSON, ndjson) as a points layer with class and score
features. Writers: labels layers to MRC or OME-Zarr, points layers to STAR, CSV or copick JSON, each with the
layer's voxel size. Errors reach napari as cryoseg's one-line messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io.coords import guess_format, read_particles, write_particles
from ..io.volumes import read_volume, volume_format, write_volume
from .layers import LayerData, layer_geometry, particles_from_layer, points_layer, volume_from_layer, volume_layer

COORDINATE_SUFFIXES = (".star", ".csv", ".json", ".ndjson")
VOLUME_SUFFIXES = (".mrc", ".rec", ".map", ".st", ".tif", ".tiff", ".zarr")


def _is_copick_json(path: Path) -> bool:
    """A .json file that holds copick picks (an object with a "points" list); other JSON is left to others."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # let the reader say what is wrong with it
    return isinstance(data, dict) and isinstance(data.get("points"), list)


def _claims(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _is_copick_json(path)
    return suffix in COORDINATE_SUFFIXES or suffix in VOLUME_SUFFIXES


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader: the function that reads `path` (or every path of a list), or None for a file cryoseg does not
    read."""
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    if not paths or not all(_claims(p) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """The layers of one or more volume or coordinate files (see the module's docstring)."""
    layers = []
    for p in (path if isinstance(path, list) else [path]):
        p = Path(p)
        layers.append(read_points(p) if p.suffix.lower() in COORDINATE_SUFFIXES else read_volume_layer(p))
    return layers


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", *VOLUME_SUFFIXES, *COORDINATE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return path.stem


def read_volume_layer(path: Path) -> LayerData:
    """An MRC, TIFF or OME-Zarr volume as an image layer (a label map: labels layer), memory-mapped where the
    format allows."""
    return volume_layer(read_volume(path), _stem(path))


def _reference_tomogram() -> tuple[tuple[float, float, float], tuple[int, int, int], tuple[float, ...]] | None:
    """Voxel size (Å), shape and origin (Å) of the tomogram open in the current viewer (the selected image layer,
    else the topmost one), for coordinate files in Å or centred coordinates; None without one."""
    try:
        import napari
        from napari.layers import Image
    except ImportError:  # used outside napari
        return None
    viewer = napari.current_viewer()
    if viewer is None:
        return None
    images = [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim == 3]
    active = viewer.layers.selection.active
    layer = active if active in images else (images[-1] if images else None)
    if layer is None:
        return None
    voxel_size, origin = layer_geometry(layer.as_layer_data_tuple()[1])
    return voxel_size, tuple(int(s) for s in layer.data.shape), origin


def read_points(path: Path) -> LayerData:
    """A coordinate file as a points layer in the voxels of its tomogram: the tomogram open in the viewer when there
    is one (its voxel size and shape convert Å and centred coordinates), else the voxel spacing the file records."""
    reference = _reference_tomogram()
    if reference is not None:
        voxel_size, shape, origin = reference
        particles = read_particles(path, voxel_size=voxel_size, shape=shape)
    else:
        spacing = None
        if guess_format(path) == "copick":
            from ..io.copick import recorded_voxel_spacing

            spacing = recorded_voxel_spacing(path)
        particles = read_particles(path, voxel_size=spacing)
        voxel_size, origin = (spacing or 1.0,) * 3, (0.0, 0.0, 0.0)
    return points_layer(particles, voxel_size, origin, name=_stem(path))


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: a labels layer to MRC or OME-Zarr (by extension) with its voxel size and origin."""
    volume = volume_from_layer(data, attributes)
    volume_format(path)  # an unknown extension is refused before anything is written
    return [str(write_volume(volume, path))]


def write_points(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: a points layer's shown points to STAR (RELION 4), CSV or copick JSON (by extension), in the
    voxels of its tomogram (copick: Å with the layer's voxel size)."""
    voxel_size, _ = layer_geometry(attributes)
    particles = particles_from_layer(data, attributes)
    return [str(write_particles(particles, path, voxel_size=voxel_size))]
