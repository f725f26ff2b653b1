"""Volume, Particles, atomic writes and records: the types every module shares."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.errors import InputError, OverwriteInputError
from cryoseg.io import Particles, StageTimer, Volume, atomic_path, write_report


def test_volume_rejects_non_3d_with_shape_in_message():
    with pytest.raises(InputError, match=r"3D volume.*\(4, 5\)"):
        Volume(np.zeros((4, 5)))


def test_volume_broadcasts_scalar_voxel_size_and_validates():
    vol = Volume(np.zeros((2, 3, 4)), voxel_size=7.5)
    assert vol.voxel_size == (7.5, 7.5, 7.5)
    assert vol.shape == (2, 3, 4)
    assert vol.require_voxel_size() == (7.5, 7.5, 7.5)
    with pytest.raises(InputError, match="voxel size is missing"):
        Volume(np.zeros((2, 3, 4)), voxel_size=(0.0, 1.0, 1.0)).require_voxel_size()


def test_particles_validate_shapes_and_subset_keeps_attributes():
    p = Particles(np.array([[1, 2, 3], [4, 5, 6.0]]), classes=[1, 2], scores=[0.5, 0.9])
    assert len(p) == 2
    sub = p.subset(np.array([False, True]))
    np.testing.assert_array_equal(sub.coords, [[4, 5, 6]])
    assert sub.classes.tolist() == [2] and sub.scores.tolist() == [0.9]
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        Particles(np.zeros((3, 2)))
    with pytest.raises(InputError, match="scores"):
        Particles(np.zeros((3, 3)), scores=[1.0])
    with pytest.raises(InputError, match="NaN"):
        Particles(np.array([[np.nan, 0, 0]]))
    assert len(Particles(np.zeros((0, 3)))) == 0


def test_particles_outside_flags_each_axis():
    p = Particles(np.array([[0, 0, 0], [9.4, 19, 29], [10, 0, 0], [0, -1, 0], [0, 0, 30]]))
    assert p.outside((10, 20, 30)).tolist() == [False, False, True, True, True]


def test_atomic_path_replaces_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_refuses_inputs(tmp_path):
    source = tmp_path / "tomo.mrc"
    source.write_bytes(b"data")
    with pytest.raises(OverwriteInputError, match="tomo.mrc"):
        with atomic_path(tmp_path / "." / "tomo.mrc", inputs=[source]):
            pass
    assert source.read_bytes() == b"data"


def test_write_report_is_json_with_versions_and_numpy_values(tmp_path):
    timer = StageTimer()
    with timer("stage"):
        pass
    path = write_report(tmp_path / "r.json", params={"k": np.int64(3), "a": np.arange(2)}, seconds=timer.seconds)
    data = json.loads(path.read_text())
    assert data["params"] == {"k": 3, "a": [0, 1]}
    assert "cryoseg" in data["versions"] and data["seconds"]["stage"] >= 0
