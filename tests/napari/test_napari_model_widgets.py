"""The ScSAM and unsupervised widgets in a real viewer: a trained model folder segments the chosen tomogram layer
into a labels layer on its geometry, class names shown; a folder of the wrong kind is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Volume, write_volume
from cryoseg.napari.layers import volume_layer
from cryoseg.napari.model_widgets import ScsamWidget, UnsupWidget

from .conftest import wait_until_idle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    img = rng.normal(0, 0.3, (6, 48, 48)).astype(np.float32)
    lab = np.zeros(img.shape, np.int8)
    img[:, 10:26, 12:28] += 2.0
    lab[:, 10:26, 12:28] = 1
    return img, lab


def _ring() -> np.ndarray:
    """A dark ring (a vesicle) and three dark balls on a bright, noisy background, 8 x 96 x 96."""
    z, y, x = np.mgrid[:8, :96, :96]
    dark = np.abs(np.hypot(y - 48, x - 48) - 30) <= 2
    for pz, py, px in ((4, 14, 80), (4, 80, 14), (4, 84, 84)):
        dark |= (z - pz) ** 2 * 0.25 + (y - py) ** 2 + (x - px) ** 2 <= 5.5 ** 2
    data = np.where(dark, 0.2, 1.0).astype(np.float32)
    return data + 0.4 * np.random.default_rng(0).normal(size=data.shape).astype(np.float32)


def _open(viewer, volume: Volume, name: str = "tomogram"):
    data, kwargs, _ = volume_layer(volume, name)
    return viewer.add_image(data, **kwargs)


def test_scsam_widget_adds_the_models_classes_as_a_labels_layer(make_napari_viewer, tmp_path, qtbot):
    img, lab = _blobs()
    image = write_volume(Volume(img, voxel_size=8.0), tmp_path / "img.mrc")
    labels = write_volume(Volume(lab, voxel_size=8.0), tmp_path / "lab.mrc")
    model = tmp_path / "model"
    assert main(["scsam", "train", str(image), "--labels", str(labels), "--classes", "blob", "-o", str(model),
                 "--sam", "tiny-sam", "--mae", "tiny-mae", "--epochs", "2", "--no-augment"]) == 0
    viewer = make_napari_viewer()
    tomogram = _open(viewer, Volume(img, voxel_size=8.0))
    widget = ScsamWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = tmp_path  # not a model folder: refused before any work
    assert not widget.run() and widget.tasks.status.value.startswith("error: ")
    widget.model.value = model
    assert widget.run()
    wait_until_idle(qtbot, widget.tasks)
    assert widget.tasks.last_error is None, widget.tasks.status.value
    layer = viewer.layers["tomogram ScSAM"]
    assert layer.data.shape == img.shape and set(np.unique(layer.data)) <= {0, 1}
    np.testing.assert_allclose(layer.scale, tomogram.scale)
    assert list(layer.features["class"]) == ["background", "blob"]


def test_unsup_widget_adds_membrane_and_particle_labels_and_particle_points(make_napari_viewer, tmp_path, qtbot):
    tomo = write_volume(Volume(_ring(), voxel_size=10.0), tmp_path / "ring.mrc")
    out = tmp_path / "run"
    assert main(["unsup", "run", str(tomo), "-o", str(out), "--slab", "ring.mrc:2:6", "--canvas", "256", "--tile",
                 "128", "--epochs", "2", "--crops-per-epoch", "8", "--patch", "32"]) == 0
    viewer = make_napari_viewer()
    tomogram = _open(viewer, Volume(_ring(), voxel_size=10.0), "ring")
    widget = UnsupWidget(viewer)
    widget.model.value = out / "model"
    assert widget.run()
    wait_until_idle(qtbot, widget.tasks)
    assert widget.tasks.last_error is None, widget.tasks.status.value
    layer = viewer.layers["ring unsupervised"]
    assert layer.data.shape == tomogram.data.shape and set(np.unique(layer.data)) <= {0, 1, 2}
    np.testing.assert_allclose(layer.scale, tomogram.scale)
    assert list(layer.features["class"]) == ["background", "membrane", "particle"]
    points = viewer.layers["ring particles"]
    np.testing.assert_allclose(points.scale, tomogram.scale)


def test_sample_data_and_the_reader_open_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("cryoseg", "simulated_tomogram")
    assert [layer.name for layer in layers] == ["simulated tomogram", "true classes", "true instances",
                                                "true particles"]
    np.testing.assert_allclose(layers[0].scale, (10.0, 10.0, 10.0))
    assert "ribosome" in list(layers[1].features["class"])
    path = write_volume(Volume(np.zeros((4, 8, 8), np.float32), voxel_size=(12.0, 6.0, 6.0)), tmp_path / "t.mrc")
    [opened] = viewer.open(str(path), plugin="cryoseg")
    np.testing.assert_allclose(opened.scale, (12.0, 6.0, 6.0))
