"""`cryoseg convert` through the CLI entry point."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io import Particles, read_particles, write_particles


@pytest.fixture
def csv_in(tmp_path):
    picks = Particles(np.array([[5.0, 10.0, 20.0], [25.0, 40.0, 60.0], [2.0, 3.0, 90.0]]),
                      classes=np.array([1, 2, 2]), scores=np.array([0.9, 0.5, 0.1]))
    return write_particles(picks, tmp_path / "in.csv")


def test_convert_csv_to_relion5_and_back(tmp_path, csv_in, capsys):
    star = tmp_path / "out.star"
    assert main(["convert", str(csv_in), str(star), "--to", "star5", "--voxel-size", "4,5,6", "--shape", "30,50,70",
                 "--tomo-name", "TS_7"]) == 0
    out = capsys.readouterr().out
    assert "converted 3 particles" in out and "(star5)" in out
    assert "1 of 3 particles lie outside the volume (30, 50, 70)" in out  # x = 90 > 70, kept
    text = star.read_text()
    assert "rlnCenteredCoordinateXAngst" in text and "TS_7" in text
    record = json.loads((tmp_path / "out.star.report.json").read_text())
    assert record["particles_written"] == 3 and record["output_format"] == "star5" and record["outside_volume"] == 1
    back = tmp_path / "back.csv"
    assert main(["convert", str(star), str(back), "--voxel-size", "4,5,6", "--shape", "30,50,70"]) == 0
    p = read_particles(back)
    np.testing.assert_allclose(p.coords, read_particles(csv_in).coords, atol=1e-5)
    assert p.classes.tolist() == [1, 2, 2]


def test_convert_one_class_to_copick_and_ndjson(tmp_path, csv_in, capsys):
    out = tmp_path / "ribo.json"
    assert main(["convert", str(csv_in), str(out), "--voxel-size", "10", "--class", "2"]) == 0
    doc = json.loads(out.read_text())
    assert [pt["location"]["x"] for pt in doc["points"]] == pytest.approx([600.0, 900.0])  # x voxels 60, 90 at 10 Å
    nd = tmp_path / "ribo.ndjson"
    assert main(["convert", str(out), str(nd)]) == 0  # voxel size from the copick file's voxel_spacing
    lines = [json.loads(line) for line in nd.read_text().splitlines()]
    zx = np.array([(d["location"]["z"], d["location"]["x"]) for d in lines], dtype=float)
    np.testing.assert_allclose(zx, [(25, 60), (2, 90)])


@pytest.mark.parametrize(("args", "message"), [
    (["out.json"], "needs the voxel size"),
    (["out.json", "--voxel-size", "10"], "holds one object, but the particles have 2 classes"),
    (["out.json", "--voxel-size", "10", "--class", "5"], "in.csv: no particles of class 5; classes present: 1, 2"),
    (["out.star", "--to", "star5", "--voxel-size", "10", "--shape", "10,20"], "--shape must be three"),
    (["out.csv", "--from", "xml"], "unknown coordinate format 'xml'"),
])
def test_convert_errors_are_one_line_and_write_nothing(tmp_path, csv_in, capsys, args, message):
    out = tmp_path / args[0]
    assert main(["convert", str(csv_in), str(out), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert "cryoseg: error: " in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_convert_refuses_to_overwrite_its_input(tmp_path, csv_in, capsys):
    before = csv_in.read_text()
    assert main(["convert", str(csv_in), str(csv_in)]) == 2
    assert "refusing to overwrite input file" in capsys.readouterr().err
    assert csv_in.read_text() == before


def test_convert_takes_voxel_size_and_shape_from_a_tomogram(tmp_path, csv_in, capsys):
    import mrcfile

    tomo = tmp_path / "tomo.mrc"
    with mrcfile.new(tomo) as mrc:
        mrc.set_data(np.zeros((30, 50, 70), dtype=np.float32))
        mrc.voxel_size = (6.0, 5.0, 4.0)  # mrcfile order x, y, z
    out = tmp_path / "out.star"
    assert main(["convert", str(csv_in), str(out), "--to", "star5", "--tomogram", str(tomo)]) == 0
    assert "1 of 3 particles lie outside the volume (30, 50, 70)" in capsys.readouterr().out
    record = json.loads((tmp_path / "out.star.report.json").read_text())
    assert record["shape"] == [30, 50, 70] and record["voxel_size"] == pytest.approx([4.0, 5.0, 6.0])
    # first particle (z, y, x) = (5, 10, 20): X = (20 - 35) * 6 Å = -90
    back = read_particles(out, voxel_size=(4, 5, 6), shape=(30, 50, 70))
    np.testing.assert_allclose(back.coords[0], [5, 10, 20], atol=1e-5)
    assert "-90.000000" in out.read_text()


def test_voxel_size_option_takes_precedence_over_the_tomogram(tmp_path, csv_in, capsys):
    from cryoseg.io import Volume
    from cryoseg.io.volumes import write_volume

    tomo = write_volume(Volume(np.zeros((30, 50, 70), np.float32), voxel_size=(4.0, 5.0, 6.0)), tmp_path / "t.mrc")
    out = tmp_path / "out.star"
    assert main(["convert", str(csv_in), str(out), "--to", "star5", "--tomogram", str(tomo), "--voxel-size", "2"]) == 0
    # first particle x = 20 in a 70-voxel row: (20 - 35) * 2 Å, not * 6 Å from the header
    assert "-30.000000" in out.read_text() and "-90.000000" not in out.read_text()
    assert json.loads((tmp_path / "out.star.report.json").read_text())["voxel_size"] == 2.0


def test_shape_option_takes_precedence_and_a_header_without_voxel_size_warns(tmp_path, csv_in, capsys, caplog):
    from cryoseg.io import Volume
    from cryoseg.io.volumes import write_volume

    tomo = write_volume(Volume(np.zeros((30, 50, 70), np.float32), voxel_size=0.0), tmp_path / "novs.mrc")
    out = tmp_path / "out.star"
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        assert main(["convert", str(csv_in), str(out), "--to", "star5", "--tomogram", str(tomo), "--voxel-size", "2",
                     "--shape", "30,50,90"]) == 0
    assert "no voxel size" not in caplog.text  # --voxel-size supplied it
    record = json.loads((tmp_path / "out.star.report.json").read_text())
    assert record["shape"] == [30, 50, 90] and record["voxel_size"] == 2.0
    assert "-50.000000" in out.read_text()  # x = 20 in a 90-voxel row: (20 - 45) * 2 Å
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        assert main(["convert", str(csv_in), str(tmp_path / "out.csv"), "--tomogram", str(tomo)]) == 0
    assert "novs.mrc: the header gives no voxel size" in caplog.text


def test_class_option_on_a_file_without_classes(tmp_path, capsys):
    plain = write_particles(Particles(np.array([[1.0, 2.0, 3.0]])), tmp_path / "plain.csv")
    assert main(["convert", str(plain), str(tmp_path / "o.csv"), "--class", "1"]) == 2
    assert "plain.csv: the particles have no classes, so class 1 cannot be selected" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
