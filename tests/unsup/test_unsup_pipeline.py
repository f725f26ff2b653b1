"""The unsupervised pipeline end to end through the Python API, on a constructed tomogram with known answers."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from cryoseg.errors import InputError, WeightsNotFoundError
from cryoseg.io.volume import Volume
from cryoseg.io.volumes import read_volume
from cryoseg.pipelines.unsup import (
    NoStructureError,
    PseudoLabelConfig,
    PseudoLabels,
    StudentTrainConfig,
    pseudo_labels,
    segment,
    train_student,
)
from cryoseg.train.config import TrainConfig
from cryoseg.unsup.canvas import CanvasConfig
from cryoseg.unsup.maps import MapConfig
from cryoseg.unsup.slabs import Slab
from cryoseg.unsup.student import StudentConfig

SMALL_CANVAS = PseudoLabelConfig(maps=MapConfig(canvas=CanvasConfig(canvas=256, tile=128)))
SMALL_STUDENT = StudentTrainConfig(StudentConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=1, dropout=0.0,
                                                 patch=32),
                                   TrainConfig(epochs=40, batch_size=8, lr=5e-3, patience=40), crops_per_epoch=64)


@pytest.fixture(scope="module")
def pseudo(toy):
    return pseudo_labels([toy()], [Slab(0, 2, 6)], SMALL_CANVAS)


def test_pseudo_labels_find_the_particles_and_the_membrane(pseudo, truth, true_centres):
    ring, balls = truth
    (item,) = pseudo.slabs
    assert item.labels.shape == (4, 96, 96) and item.labels.dtype == np.uint8
    # every particle found once, near its true centre (z within the slab)
    assert len(item.centres) == len(true_centres)
    for true in true_centres:
        assert np.min(np.linalg.norm(item.centres[:, 1:] - true[1:], axis=1)) < 2.0
    assert np.all((item.centres[:, 0] >= 2) & (item.centres[:, 0] < 6))
    # the ring is membrane, the balls are particles; what is labelled lies on or next to a structure
    membrane, particle = item.labels == 1, item.labels == 2
    assert membrane[ring[2:6]].mean() > 0.95 and particle[balls[2:6]].mean() > 0.6
    assert membrane[balls[2:6]].mean() < 0.3 and not np.any(particle & ring[2:6])
    from scipy import ndimage
    near = ndimage.binary_dilation(ring | balls, iterations=4)[2:6]
    assert near[item.labels > 0].mean() > 0.8  # a random labelling: about 0.31
    assert pseudo.chosen == "user" and pseudo.record["features"]["name"] == "filterbank"


def test_pseudo_labels_save_and_load_round_trip(pseudo, tmp_path):
    out = pseudo.save(tmp_path / "pl")
    folder = out / "slabs" / "volume0_z2-6"
    assert {"image.mrc", "labels.mrc", "maps.mrc", "particles.csv", "particles.star", "preview.png"} <= {
        p.name for p in folder.iterdir()}
    labels = read_volume(folder / "labels.mrc")
    assert labels.voxel_size == (10.0, 10.0, 10.0) and labels.origin[0] == 20.0  # z offset of the slab, in Å
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "unsup-pseudo-labels" and report["chosen"] == "user"
    assert report["slabs"][0]["start"] == 2 and report["slabs"][0]["particles"] == 3
    assert report["settings"]["maps"]["canvas"]["canvas"] == 256 and "seconds" in report
    loaded = PseudoLabels.load(out)
    np.testing.assert_array_equal(loaded.slabs[0].labels, pseudo.slabs[0].labels)
    np.testing.assert_allclose(loaded.slabs[0].centres, pseudo.slabs[0].centres, atol=1e-3)
    np.testing.assert_allclose(loaded.slabs[0].image, pseudo.slabs[0].image)
    assert loaded.voxel_size == pseudo.voxel_size and loaded.slabs[0].slab == Slab(0, 2, 6)
    with pytest.raises(InputError, match="not a pseudo-label folder"):
        PseudoLabels.load(tmp_path)


def test_automatic_slabs_are_recorded(tmp_path, toy):
    vol = toy()
    vol.data[:3] = 1.0  # nothing on the first slices: the choice must avoid them
    result = pseudo_labels([vol], None, replace(SMALL_CANVAS, n_slabs=1, slab_thickness=4))
    (item,) = result.slabs
    assert result.chosen == "auto" and item.slab.thickness == 4 and item.slab.start >= 3
    assert item.slab.score is not None and item.slab.score > 0
    report = json.loads((result.save(tmp_path / "pl") / "report.json").read_text())
    assert report["chosen"] == "auto" and report["slabs"][0]["score"] == pytest.approx(item.slab.score)


def test_bad_inputs_are_refused_before_any_work(toy):
    vol = toy()
    with pytest.raises(InputError, match="outside the volume"):
        pseudo_labels([vol], [Slab(0, 5, 9)], SMALL_CANVAS)
    with pytest.raises(InputError, match="1 slice\\(s\\) thick"):
        pseudo_labels([vol], [Slab(0, 5, 6)], SMALL_CANVAS)
    with pytest.raises(InputError, match="voxel size"):
        pseudo_labels([Volume(vol.data, voxel_size=0.0)], [Slab(0, 0, 4)], SMALL_CANVAS)
    flat = Volume(np.ones((6, 64, 64), np.float32), voxel_size=10.0)
    with pytest.raises(NoStructureError, match="no membrane or particle found in the slabs volume0:0:6"):
        pseudo_labels([flat], [Slab(0, 0, 6)], SMALL_CANVAS)


def test_missing_diffusion_weights_say_where_we_looked(isolated_home, toy):
    with pytest.raises(WeightsNotFoundError, match="stable-diffusion-v1-4.*looked in hub cache"):
        pseudo_labels([toy()], [Slab(0, 2, 6)], replace(SMALL_CANVAS, features="stable-diffusion-v1-4"))


def test_tiny_diffusion_unet_runs_the_same_pipeline(toy):
    config = replace(SMALL_CANVAS, features="tiny-sd")
    # random weights attend almost uniformly: their maps do not follow the image, and the contrast check says so
    with pytest.raises(NoStructureError):
        pseudo_labels([toy()], [Slab(0, 2, 6)], config)
    loose = replace(config, labels=replace(config.labels, min_contrast=0.0))
    result = pseudo_labels([toy()], [Slab(0, 2, 6)], loose)
    assert result.record["features"]["name"] == "tiny-sd" and result.slabs[0].labels.shape == (4, 96, 96)
    assert result.slabs[0].maps.shape == (4, 96, 96) and np.ptp(result.slabs[0].maps) > 0


def test_student_learns_the_pseudo_labels_and_reloads_identically(pseudo, tmp_path, toy, truth):
    result = train_student(pseudo, tmp_path / "model", SMALL_STUDENT)
    h = result.history
    assert h.train_loss[-1] < 0.7 * h.train_loss[0]
    assert result.val_dice == pytest.approx(max(h.val_metric)) and result.val_dice > 0.5
    assert {"model.safetensors", "config.json", "report.json", "curves.png"} <= {p.name for p in
                                                                                 (tmp_path / "model").iterdir()}
    vol = toy(seed=5)  # a new tomogram of the same kind
    first = segment(result.model_dir, vol, probabilities=True)
    again = segment(result.model_dir, vol)
    np.testing.assert_array_equal(first.labels.data, again.labels.data)
    assert first.labels.voxel_size == vol.voxel_size and first.probabilities.shape == (3, *vol.shape)
    ring, balls = truth
    membrane = first.labels.data == 1
    iou = np.count_nonzero(membrane & ring) / np.count_nonzero(membrane | ring)
    assert iou > 0.3, iou
    files = first.save(tmp_path / "seg")
    assert {"labels", "particles.csv", "particles.star", "preview", "report", "probability_membrane"} <= set(files)
    assert read_volume(files["labels"]).voxel_size == (10.0, 10.0, 10.0)


def test_small_membrane_components_become_background():
    from cryoseg.unsup.labels import LabelConfig, drop_small_membranes

    labels = np.zeros((10, 40, 40), np.uint8)
    labels[:, 5:7, 2:38] = 1  # a sheet: 10 x 2 x 36 = 720 voxels
    labels[4:6, 30:33, 30:33] = 1  # a speck of 18 voxels
    labels[2:5, 20:25, 10:15] = 2  # particles are left alone
    out = drop_small_membranes(labels, 1.0, LabelConfig(membrane_volume_nm3=100))
    assert np.array_equal(out[:, 5:7, 2:38], labels[:, 5:7, 2:38]) and not out[4:6, 30:33, 30:33].any()
    assert np.count_nonzero(out == 2) == 75 and out.dtype == labels.dtype
    # the voxel's volume counts: with 50 nm sections the speck holds 900 nm³ and stays
    assert out.sum() < drop_small_membranes(labels, 50.0, LabelConfig(membrane_volume_nm3=100)).sum()


def test_nan_in_a_slab_is_refused_before_any_work(toy):
    vol = toy()
    data = vol.data.copy()
    data[3, 10, 10] = np.nan
    bad = Volume(data, voxel_size=10.0)
    with pytest.raises(InputError, match="NaN or infinite values"):
        pseudo_labels([bad], [Slab(0, 2, 6)], SMALL_CANVAS)
    with pytest.raises(InputError, match="NaN or infinite values"):
        pseudo_labels([bad], None, SMALL_CANVAS)
    assert len(pseudo_labels([bad], [Slab(0, 4, 8)], SMALL_CANVAS).slabs) == 1  # a slab without it is fine
