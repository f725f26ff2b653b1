"""cryoseg's objects as napari layer data and back, with the voxel size kept (no napari import here).

A layer made by cryoseg holds its data in voxels, z, y, x (a tomogram's array; picks as voxel coordinates of that
tomogram), and its geometry in napari's terms: `scale` is the voxel size and `translate` the origin, in the unit
the user prefers (Å or nm, `preferred_unit`), with `units` naming it. The exact voxel size and origin in Å also
ride in `metadata["cryoseg"]`, so a layer written back keeps them to the last digit. Layer data tuples are
`(data, kwargs, layer type)`, as napari's readers and sample data return them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.particles import Particles
from ..io.units import angstrom_per_unit
from ..io.volume import Volume

# the units a user can choose: label shown -> (unit napari understands, Å per unit)
UNITS = {"Å": ("angstrom", 1.0), "nm": ("nanometer", 10.0)}
DEFAULT_UNIT = "Å"
UNIT_VARIABLE = "CRYOSEG_NAPARI_UNIT"
METADATA_KEY = "cryoseg"
AXES = ("z", "y", "x")
LayerData = tuple[Any, dict[str, Any], str]


def _settings_path() -> Path:
    from ..models.weights import cryoseg_home

    return cryoseg_home() / "napari.json"


def _unit_label(unit: str) -> str:
    """"Å" or "nm" for any spelling of either (A, angstrom, nanometer, ...)."""
    per = angstrom_per_unit(unit)
    for label, (_, factor) in UNITS.items():
        if per == factor:
            return label
    raise InputError(f"unknown layer unit {unit!r}; choose Å or nm")


def preferred_unit() -> str:
    """The unit of new layers' scale: `$CRYOSEG_NAPARI_UNIT`, else the choice saved by the widget, else Å."""
    if os.environ.get(UNIT_VARIABLE):
        return _unit_label(os.environ[UNIT_VARIABLE])
    try:
        return _unit_label(json.loads(_settings_path().read_text())["unit"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_UNIT


def save_preferred_unit(unit: str) -> None:
    """Remember `unit` ("Å" or "nm") for the layers of later sessions."""
    from ..io.atomic import atomic_path

    with atomic_path(_settings_path()) as tmp:
        tmp.write_text(json.dumps({"unit": _unit_label(unit)}))


def geometry_kwargs(voxel_size: tuple[float, float, float], origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
                    unit: str | None = None) -> dict[str, Any]:
    """Layer kwargs placing (Z, Y, X) voxel data: scale and translate in `unit` (default `preferred_unit()`), the
    unit's name, axis labels, and the exact voxel size and origin in Å in the metadata."""
    unit = _unit_label(unit or preferred_unit())
    name, per = UNITS[unit]
    return {"scale": tuple(float(v) / per for v in voxel_size), "translate": tuple(float(o) / per for o in origin),
            "units": (name,) * 3, "axis_labels": AXES,
            "metadata": {METADATA_KEY: {"voxel_size": [float(v) for v in voxel_size],
                                        "origin": [float(o) for o in origin]}}}


def layer_geometry(attributes: Mapping[str, Any]) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The voxel size and origin in Å (z, y, x) of a layer, from its attributes (`layer.as_layer_data_tuple()[1]`
    or a writer's `attributes`).

    The scale and units decide (the user may have changed them); the exact values of the metadata are used when
    they agree with them. A layer with no length unit (napari's default "pixel") has its scale taken as Å.
    """
    scale = np.asarray(attributes.get("scale", (1.0, 1.0, 1.0)), float)[-3:]
    translate = np.asarray(attributes.get("translate", (0.0, 0.0, 0.0)), float)[-3:]
    units = attributes.get("units") or ()
    per = angstrom_per_unit(str(units[-1])) if len(units) else None
    per = per or 1.0
    voxel_size, origin = scale * per, translate * per
    saved = (attributes.get("metadata") or {}).get(METADATA_KEY) or {}
    for key, value in (("voxel_size", voxel_size), ("origin", origin)):
        exact = saved.get(key)
        if exact is not None and np.allclose(exact, value, rtol=1e-6, atol=1e-9):
            value[:] = exact
    return tuple(float(v) for v in voxel_size), tuple(float(o) for o in origin)


def volume_from_layer(data: Any, attributes: Mapping[str, Any]) -> Volume:
    """A `Volume` of a 3D image or labels layer's data (Z, Y, X) with its voxel size and origin in Å."""
    array = data[0] if isinstance(data, (list, tuple)) else data  # a multiscale layer: its full resolution
    if getattr(array, "ndim", 0) != 3:
        name = attributes.get("name", "the layer")
        raise InputError(f"{name}: expected a 3D volume (z, y, x), got data of shape {getattr(array, 'shape', '?')}")
    voxel_size, origin = layer_geometry(attributes)
    source = ((attributes.get("metadata") or {}).get(METADATA_KEY) or {}).get("source")
    return Volume(np.asarray(array), voxel_size, origin, Path(source) if source else None)


def volume_layer(volume: Volume, name: str, layer_type: str | None = None, unit: str | None = None) -> LayerData:
    """A tomogram as an "image" layer, or a label map (integer data) as a "labels" layer."""
    kind = layer_type or ("labels" if volume.data.dtype.kind in "iub" else "image")
    kwargs = {"name": name, **geometry_kwargs(volume.voxel_size, volume.origin, unit)}
    if volume.source is not None:
        kwargs["metadata"][METADATA_KEY]["source"] = str(volume.source)
    if kind == "image":
        kwargs["colormap"] = "gray"
    return volume.data, kwargs, kind


def points_layer(particles: Particles, voxel_size: tuple[float, float, float], origin=(0.0, 0.0, 0.0),
                 name: str = "particles", size: float = 8.0, unit: str | None = None) -> LayerData:
    """Picks as a "points" layer: coordinates in voxels (z, y, x), score, class, instance id and orientation as
    features; rings coloured by score when there are scores. `size` is the point diameter in voxels."""
    features: dict[str, np.ndarray] = {}
    if particles.scores is not None:
        features["score"] = particles.scores
    if particles.classes is not None:
        features["class_id"] = particles.classes
        features["class"] = np.array([particles.class_names.get(int(c), str(int(c))) for c in particles.classes],
                                     dtype=object)
    if particles.instance_ids is not None:
        features["instance_id"] = particles.instance_ids
    if particles.orientations is not None:
        for k, angle in enumerate(("rot", "tilt", "psi")):
            features[angle] = particles.orientations[:, k]
    kwargs = {"name": name, "size": size, "border_color": "white", **geometry_kwargs(voxel_size, origin, unit)}
    if features:
        kwargs["features"] = features
    if particles.scores is not None and len(particles):  # rings, so the masks under them stay visible
        kwargs.update(face_color="transparent", border_color="score", border_colormap="viridis", border_width=0.15)
    return particles.coords, kwargs, "points"


def particles_from_layer(data: Any, attributes: Mapping[str, Any]) -> Particles:
    """The `Particles` of a points layer (z, y, x voxels); hidden points (`shown` False, e.g. under the score
    slider) are left out, features named as `points_layer` writes them are kept."""
    coords = np.asarray(data, float).reshape(-1, 3)
    features = attributes.get("features")
    columns = {} if features is None else {k: np.asarray(features[k]) for k in features}
    shown = np.asarray(attributes.get("shown", np.ones(len(coords), bool)), bool)
    if shown.shape != (len(coords),):
        shown = np.ones(len(coords), bool)
    classes, names = None, {}
    if "class_id" in columns:
        classes = columns["class_id"].astype(np.int64)
        if "class" in columns:
            names = {int(c): str(n) for c, n in zip(classes, columns["class"])}
    elif "class" in columns:
        labels = [str(n) for n in columns["class"]]
        order = list(dict.fromkeys(labels))
        classes = np.array([order.index(n) + 1 for n in labels], np.int64)
        names = {i + 1: n for i, n in enumerate(order)}
    angles = [columns.get(a) for a in ("rot", "tilt", "psi")]
    orientations = np.stack(angles, axis=1).astype(float) if all(a is not None for a in angles) else None
    particles = Particles(coords, classes, columns.get("score"), columns.get("instance_id"), orientations, names)
    return particles.subset(shown)


def layer_attributes(layer: Any) -> dict[str, Any]:
    """The attributes of a napari layer that place its data (name, scale, translate, units, metadata), as
    `layer_geometry` and `volume_from_layer` read them."""
    return {"name": layer.name, "scale": layer.scale, "translate": layer.translate, "units": layer.units,
            "metadata": layer.metadata}


def tomogram_layers(viewer: Any) -> list:
    """The viewer's 3D image layers (the tomograms a widget can work on)."""
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image) and layer.ndim == 3]


def put_layer(viewer: Any, data: Any, kwargs: dict[str, Any], kind: str) -> Any:
    """Add a layer, or, when one of that name is there (an earlier run's), replace its data and features only, so
    the user's display settings stay. Returns the layer."""
    name = kwargs["name"]
    if name not in viewer.layers:
        return getattr(viewer, f"add_{kind}")(data, **kwargs)
    layer = viewer.layers[name]
    layer.data = data
    if "features" in kwargs:
        layer.features = kwargs["features"]
    return layer
