"""`cryoseg preview` through the CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cryoseg.cli.main import main
from cryoseg.io import Particles, Volume
from cryoseg.io.coords import write_particles
from cryoseg.io.volumes import write_volume
from cryoseg.viz import render_preview

SHAPE = (12, 20, 24)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(1)
    tomo = write_volume(Volume(rng.normal(size=SHAPE).astype(np.float32), voxel_size=(20.0, 10.0, 10.0)),
                        tmp_path / "tomo.mrc")
    labels = np.zeros(SHAPE, np.int16)
    labels[4:8, 2:6, 2:6] = 3
    lab = write_volume(Volume(labels, voxel_size=(20.0, 10.0, 10.0)), tmp_path / "labels.mrc")
    picks = write_particles(Particles(np.array([[6.0, 4.0, 4.0]])), tmp_path / "picks.csv")
    return tomo, lab, picks


def test_preview_with_labels_and_picks(tmp_path, files, capsys):
    tomo, lab, picks = files
    out = tmp_path / "out" / "preview.png"
    assert main(["preview", str(tomo), "-o", str(out), "--labels", str(lab), "--picks", str(picks),
                 "--point", "6,4,4", "--title", "demo"]) == 0
    assert "wrote" in capsys.readouterr().out
    image = np.asarray(Image.open(out).convert("RGB"))
    from cryoseg.io.volumes import read_volume

    expected = render_preview(read_volume(tomo), point=(6, 4, 4), labels=read_volume(lab),
                              picks=np.array([[6.0, 4.0, 4.0]]), title="demo")
    np.testing.assert_array_equal(image, expected.image)
    # 20 Å z voxels: the y panel (rows z) is drawn with z twice as tall as x is wide.
    y = expected.panels["y"]
    assert y.row_scale == pytest.approx(2 * y.col_scale)
    record = json.loads((tmp_path / "out" / "preview.png.report.json").read_text())
    assert record["command"] == "preview" and record["point"] == [6.0, 4.0, 4.0]
    assert record["voxel_size"] == [20.0, 10.0, 10.0]


def test_voxel_size_override_changes_aspect(tmp_path, files):
    tomo, _, _ = files
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["preview", str(tomo), "-o", str(a)]) == 0
    assert main(["preview", str(tomo), "-o", str(b), "--voxel-size", "10"]) == 0
    wa, ha = Image.open(a).size
    wb, hb = Image.open(b).size
    assert wa / ha != pytest.approx(wb / hb, rel=0.01)
    assert json.loads((tmp_path / "b.png.report.json").read_text())["voxel_size"] == [10.0, 10.0, 10.0]


@pytest.mark.parametrize("extra, message", [
    (["--point", "12,4,4"], "outside the volume of shape (12, 20, 24)"),
    (["--point", "1,2"], "--point must be three comma-separated numbers"),
    (["--labels", "BAD"], "has shape (12, 20, 25) but"),
])
def test_bad_inputs_write_nothing(tmp_path, files, capsys, extra, message):
    tomo, _, _ = files
    bad = write_volume(Volume(np.zeros((12, 20, 25), np.int16)), tmp_path / "bad.mrc")
    extra = [str(bad) if e == "BAD" else e for e in extra]
    before = sorted(tmp_path.iterdir())
    assert main(["preview", str(tomo), "-o", str(tmp_path / "p.png"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryoseg: error:") and message in err
    assert sorted(tmp_path.iterdir()) == before


def test_refuses_non_png_and_overwriting_inputs(tmp_path, files, capsys):
    tomo, _, _ = files
    assert main(["preview", str(tomo), "-o", str(tmp_path / "p.jpg")]) == 2
    assert "use a .png file name" in capsys.readouterr().err
    # The report of picks.png is picks.png.report.json; here a (copick) input has that name.
    picks = write_particles(Particles(np.array([[6.0, 4.0, 4.0]])), tmp_path / "picks.png.report.json",
                            fmt="copick", voxel_size=10.0)
    original = picks.read_bytes()
    before = sorted(tmp_path.iterdir())
    assert main(["preview", str(tomo), "-o", str(tmp_path / "picks.png"), "--picks", str(picks), "--overwrite"]) == 2
    assert "refusing to overwrite input file" in capsys.readouterr().err
    assert picks.read_bytes() == original and sorted(tmp_path.iterdir()) == before
