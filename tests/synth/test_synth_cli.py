"""`cryoseg simulate`: files written, options forwarded, bad input refused with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryoseg.cli.main import main
from cryoseg.io.coords import read_particles
from cryoseg.io.volumes import read_volume
from cryoseg.synth import SimulationConfig, simulate

FILES = {"tomogram.mrc", "labels.mrc", "instances.mrc", "particles.csv", "particles.star", "report.json"}
SMALL = ["--shape", "32,48,56", "--particles", "3", "--templates", "shell,globule", "--vesicles", "1",
         "--filaments", "0", "--seed", "2"]


def test_simulate_writes_tomogram_ground_truth_and_record(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "-o", str(out), *SMALL, "--snr", "2", "--tilt-range", "-45,57",
                 "--tilt-step", "6"]) == 0
    assert {p.name for p in out.iterdir()} == FILES
    assert str(out / "tomogram.mrc") in capsys.readouterr().out

    tomogram, labels, instances = (read_volume(out / f"{n}.mrc") for n in ("tomogram", "labels", "instances"))
    assert tomogram.shape == labels.shape == instances.shape == (32, 48, 56)
    assert tomogram.voxel_size == (10.0, 10.0, 10.0)

    record = json.loads((out / "report.json").read_text())
    assert record["seed"] == 2 and record["config"]["seed"] == 2
    assert record["config"]["snr"] == 2.0 and record["config"]["tilt_range"] == [-45.0, 57.0]
    assert record["config"]["templates"] == ["shell", "globule"]
    defaults = SimulationConfig()
    assert record["config"]["defocus"] == defaults.defocus  # options not given keep the library default
    assert record["config"]["voxel_size"] == defaults.voxel_size
    assert record["tilt_angles"] == [-45.0 + 6 * i for i in range(18)]
    assert record["label_names"] == {"0": "background", "1": "membrane", "2": "shell", "3": "globule"}

    # the CLI is the library: same config, same tomogram
    config = SimulationConfig(shape=(32, 48, 56), particles=3, templates=("shell", "globule"), vesicles=1,
                              filaments=0, seed=2, snr=2.0, tilt_range=(-45.0, 57.0), tilt_step=6.0)
    sim = simulate(config)
    np.testing.assert_array_equal(np.asarray(tomogram.data), sim.tomogram.data)
    np.testing.assert_array_equal(np.asarray(labels.data), sim.labels.data)
    np.testing.assert_array_equal(np.asarray(instances.data), sim.instances.data)

    # both particle tables point at their own instance and class in the written label volumes
    for name in ("particles.csv", "particles.star"):
        table = read_particles(out / name, voxel_size=10.0, shape=(32, 48, 56))
        assert len(table) == 3
        np.testing.assert_allclose(table.coords, sim.particles.coords, atol=1e-4)
        for i, (center, cls) in enumerate(zip(table.coords, table.classes)):
            voxel = tuple(np.round(center).astype(int))
            assert labels.data[voxel] == cls and instances.data[voxel] == i + 1
        np.testing.assert_allclose(table.orientations, sim.particles.orientations, atol=1e-4)


def test_templates_from_the_shared_folder(tmp_path, shared_data):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--shape", "48,112,112", "--templates",
                 str(shared_data / "templates"), "--particles", "10", "--vesicles", "0", "--filaments", "0",
                 "--no-noise", "--no-ctf"]) == 0
    record = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in record["templates"]] == sorted(p.stem for p in (shared_data / "templates").glob("*.mrc"))
    assert [t["count"] for t in record["templates"]] == [1] * 10
    labels = read_volume(out / "labels.mrc").data
    assert set(np.unique(labels)) == set(range(12)) - {1}  # ten classes 2..11, no membrane


def test_non_empty_output_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("mine")
    assert main(["-q", "simulate", "-o", str(out), *SMALL]) == 2
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main(["-q", "simulate", "-o", str(out), *SMALL, "--overwrite"]) == 0
    assert {p.name for p in out.iterdir()} == FILES | {"notes.txt"} and keep.read_text() == "mine"


def test_an_input_template_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    template = out / "tomogram.mrc"  # a user's map that happens to sit where the tomogram would go
    sim = simulate(SimulationConfig(shape=(32, 48, 48), particles=1, templates=("shell",), vesicles=0, filaments=0))
    import mrcfile

    with mrcfile.new(template) as mrc:
        mrc.set_data(np.ascontiguousarray(np.asarray(sim.density.data)[:24, :24, :24]))
        mrc.voxel_size = 10.0
    before = template.read_bytes()
    code = main(["-q", "simulate", "-o", str(out), "--shape", "32,48,48", "--templates", str(template),
                 "--particles", "1", "--vesicles", "0", "--filaments", "0", "--overwrite"])
    assert code == 2
    assert f"input {template} lies inside the output folder {out}" in capsys.readouterr().err
    assert template.read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--shape", "32,48"], "--shape needs 3 comma-separated numbers"),
    (["--shape", "0,48,48"], "shape must be three positive integers"),
    (["--shape", "8,48,48"], "at least 16 voxels"),
    (["--snr", "-1"], "snr must be a positive number"),
    (["--tilt-step", "0"], "tilt_step must be a positive number"),
    (["--tilt-range", "-95,60"], "tilt_range must be"),
    (["--voxel-size", "0"], "voxel_size must be a positive number"),
    (["--templates", "/no/such/map.mrc"], "template /no/such/map.mrc: no such file or folder"),
    (["--particles", "400"], "more than non-overlapping random placement can reach"),
    (["--templates", "ribosome", "--shape", "24,200,200"], "does not fit in a volume"),
    (["--templates", "shell", "--particles", "9", "--shape", "24,64,64", "--vesicles", "0"],
     "could not fit particle"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "sim"
    base = ["--shape", "32,48,48", "--particles", "2", "--templates", "shell", "--vesicles", "1", "--filaments", "0"]
    assert main(["-q", "simulate", "-o", str(out), *base, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryoseg: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_refusing_an_input_template_writes_no_partial_set(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    template = out / "labels.mrc"  # written after tomogram.mrc: the refusal must come before any file
    sim = simulate(SimulationConfig(shape=(32, 48, 48), particles=1, templates=("shell",), vesicles=0, filaments=0))
    import mrcfile

    with mrcfile.new(template) as mrc:
        mrc.set_data(np.ascontiguousarray(np.asarray(sim.density.data)[:24, :24, :24]))
        mrc.voxel_size = 10.0
    before = template.read_bytes()
    assert main(["-q", "simulate", "-o", str(out), "--shape", "32,48,48", "--templates", str(template),
                 "--particles", "1", "--vesicles", "0", "--filaments", "0", "--overwrite"]) == 2
    assert f"input {template} lies inside the output folder {out}" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["labels.mrc"] and template.read_bytes() == before


def test_voxel_size_option_reaches_every_written_volume(tmp_path):
    out = tmp_path / "sim"
    assert main(["-q", "simulate", "-o", str(out), "--shape", "32,48,48", "--particles", "1", "--templates", "shell",
                 "--vesicles", "0", "--filaments", "0", "--voxel-size", "14"]) == 0
    for name in ("tomogram", "labels", "instances"):
        assert read_volume(out / f"{name}.mrc").voxel_size == (14.0, 14.0, 14.0)
    assert json.loads((out / "report.json").read_text())["config"]["voxel_size"] == 14.0
