"""The plugin's readers and writers: voxel size and coordinates survive a round trip exactly; the manifest is
valid and found by napari's plugin engine."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.io import Volume, write_volume
from cryoseg.io.coords import read_particles, write_particles
from cryoseg.io.particles import Particles
from cryoseg.io.volumes import read_volume
from cryoseg.napari.files import get_reader, write_labels, write_points
from cryoseg.napari.layers import layer_geometry, particles_from_layer, points_layer, volume_layer

VOXEL = (13.48, 13.48, 13.48)
ORIGIN = (-20.0, 40.5, 7.25)


@pytest.fixture(autouse=True)
def _unit(monkeypatch, tmp_path):
    monkeypatch.setenv("CRYOSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CRYOSEG_NAPARI_UNIT", raising=False)


def _particles() -> Particles:
    coords = np.array([[3.0, 10.25, 20.5], [7.5, 1.0, 30.0], [12.0, 5.5, 2.125]])
    return Particles(coords, classes=np.array([2, 2, 3]), scores=np.array([0.9, 0.2, 0.55]),
                     instance_ids=np.array([1, 2, 3]), class_names={2: "ribosome", 3: "proteasome"})


@pytest.mark.parametrize("unit, factor", [("Å", 1.0), ("nm", 10.0)])
def test_a_tomogram_opens_with_its_voxel_size_as_the_scale_in_the_chosen_unit(tmp_path, monkeypatch, unit, factor):
    monkeypatch.setenv("CRYOSEG_NAPARI_UNIT", unit)
    data = np.random.default_rng(0).normal(size=(8, 12, 16)).astype(np.float32)
    path = write_volume(Volume(data, VOXEL, ORIGIN), tmp_path / "tomo.mrc")
    reader = get_reader(str(path))
    [(array, kwargs, kind)] = reader(str(path))
    assert kind == "image" and np.array_equal(np.asarray(array), data)
    header = read_volume(path)  # MRC keeps the voxel size as float32
    np.testing.assert_allclose(kwargs["scale"], np.array(header.voxel_size) / factor, rtol=1e-12)
    np.testing.assert_allclose(kwargs["translate"], np.array(header.origin) / factor, rtol=1e-12)
    assert kwargs["units"] == (("angstrom" if unit == "Å" else "nanometer"),) * 3
    assert layer_geometry(kwargs) == (header.voxel_size, header.origin)


@pytest.mark.parametrize("suffix", [".mrc", ".zarr"])
def test_labels_round_trip_keeps_voxel_size_origin_and_values(tmp_path, monkeypatch, suffix):
    monkeypatch.setenv("CRYOSEG_NAPARI_UNIT", "nm")  # scale in nm; the exact Å come back
    labels = np.zeros((6, 10, 12), np.int32)
    labels[1:4, 2:6, 3:9] = 7
    source = write_volume(Volume(labels, VOXEL, ORIGIN), tmp_path / "labels.mrc")
    [(array, kwargs, kind)] = get_reader(str(source))(str(source))
    assert kind == "labels"
    [written] = write_labels(str(tmp_path / f"out{suffix}"), array, kwargs)
    back = read_volume(written)
    assert np.array_equal(back.data, labels)
    assert back.voxel_size == read_volume(source).voxel_size and back.origin == read_volume(source).origin
    with pytest.raises(Exception, match="input"):
        write_labels(str(source), array, kwargs)  # the file it came from is never overwritten


@pytest.mark.parametrize("suffix, fmt", [(".star", "star"), (".csv", "csv"), (".json", "copick")])
def test_points_round_trip_keeps_coordinates_classes_and_scores(tmp_path, suffix, fmt):
    particles = _particles()
    if fmt == "copick":  # a copick picks file holds one object
        particles = particles.select_class("ribosome")
    path = write_particles(particles, tmp_path / f"picks{suffix}", voxel_size=VOXEL)
    reader = get_reader(str(path))
    assert reader is not None
    [(coords, kwargs, kind)] = reader(str(path))
    assert kind == "points"
    np.testing.assert_allclose(coords, particles.coords, rtol=0, atol=1e-9)
    if fmt == "copick":  # the file records its voxel spacing: it becomes the layer's
        assert layer_geometry(kwargs)[0] == VOXEL
    [out] = write_points(str(tmp_path / f"again{suffix}"), coords, kwargs)
    back = read_particles(out, voxel_size=VOXEL)
    np.testing.assert_allclose(back.coords, particles.coords, rtol=0, atol=1e-9)
    if fmt != "copick":  # copick files hold no scores
        np.testing.assert_allclose(back.scores, particles.scores)
        assert np.array_equal(back.classes, particles.classes)


def test_points_layer_features_and_hidden_points_are_not_written(tmp_path):
    particles = _particles()
    coords, kwargs, _ = points_layer(particles, VOXEL, ORIGIN)
    assert list(kwargs["features"]["class"]) == ["ribosome", "ribosome", "proteasome"]
    assert kwargs["border_color"] == "score" and kwargs["face_color"] == "transparent"
    kwargs["shown"] = particles.scores >= 0.5  # as the score slider leaves it
    kept = particles_from_layer(coords, kwargs)
    assert len(kept) == 2 and np.array_equal(kept.coords, particles.coords[[0, 2]])
    [out] = write_points(str(tmp_path / "shown.star"), coords, kwargs)
    assert len(read_particles(out)) == 2


def test_star5_in_angstrom_needs_a_tomogram_and_says_so(tmp_path):
    path = write_particles(_particles(), tmp_path / "r5.star", fmt="star5", voxel_size=VOXEL, shape=(16, 40, 40))
    with pytest.raises(InputError):
        get_reader(str(path))(str(path))  # no viewer with a tomogram: its size is unknown


def test_the_reader_declines_what_it_does_not_read(tmp_path):
    other = tmp_path / "settings.json"
    other.write_text('{"theme": "dark"}')
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path / "image.png")) is None
    picks = tmp_path / "picks.json"
    picks.write_text('{"points": []}')
    assert get_reader(str(picks)) is not None


def test_volume_layer_of_a_label_map_is_labels_and_keeps_its_source():
    vol = Volume(np.zeros((4, 4, 4), np.uint8), VOXEL)
    assert volume_layer(vol, "x")[2] == "labels"
    assert volume_layer(Volume(np.zeros((4, 4, 4), np.float32), VOXEL), "x")[2] == "image"


def test_the_manifest_is_valid_and_names_every_contribution():
    from npe2 import PluginManager
    from npe2.manifest.utils import import_python_name

    manager = PluginManager()
    manager.discover(include_npe1=False)
    manifest = manager.get_manifest("cryoseg")
    contributions = manifest.contributions
    assert {w.display_name for w in contributions.widgets} == {"Segment and pick", "ScSAM segmentation",
                                                               "Unsupervised segmentation"}
    assert [s.key for s in contributions.sample_data] == ["simulated_tomogram"]
    assert {tuple(w.layer_types) for w in contributions.writers} == {("labels",), ("points",)}
    for command in contributions.commands:  # every command imports
        assert callable(import_python_name(command.python_name))
