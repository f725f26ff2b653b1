"""Bad volumes given to every command that writes something: one line naming the file and the problem, exit 2,
and nothing written (no PNG, report, coordinate file or record)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from cryoseg.cli.main import main
from cryoseg.io import Particles, Volume
from cryoseg.io.coords import write_particles
from cryoseg.io.volumes import write_volume

SHAPE = (6, 8, 10)


def _truncated(folder):
    raw = write_volume(Volume(np.ones(SHAPE, np.float32), voxel_size=10.0), folder / "full.mrc").read_bytes()
    (folder / "full.mrc").unlink()
    (folder / "cut.mrc").write_bytes(raw[:-40])
    return folder / "cut.mrc"


def _random_bytes(folder):
    (folder / "rand.mrc").write_bytes(np.random.default_rng(0).bytes(3000))
    return folder / "rand.mrc"


def _flat_mrc(folder):
    import mrcfile

    with mrcfile.new(folder / "flat.mrc") as mrc:
        mrc.set_data(np.zeros(SHAPE[1:], np.float32))
    return folder / "flat.mrc"


def _hyper_tif(folder):
    tifffile.imwrite(folder / "hyper.tif", np.zeros((2, *SHAPE), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    return folder / "hyper.tif"


def _junk_tif(folder):
    (folder / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 100)
    return folder / "junk.tif"


def _junk_zarr(folder):
    (folder / "junk.zarr").mkdir()
    (folder / "junk.zarr" / ".zgroup").write_text("{not json")
    return folder / "junk.zarr"


def _nan_mrc(folder):
    data = np.ones(SHAPE, np.float32)
    data[1, 2, 3] = np.inf
    return write_volume(Volume(data, voxel_size=10.0), folder / "nan.mrc")


BAD = {
    "truncated": (_truncated, "cut.mrc: truncated MRC file: the header describes"),
    "random": (_random_bytes, "rand.mrc: "),
    "2d": (_flat_mrc, "flat.mrc: a single 2D image of shape (8, 10), not a 3D volume"),
    "4d": (_hyper_tif, "hyper.tif: expected a 3D volume (z, y, x), got an array of shape (2, 6, 8, 10)"),
    "tiff": (_junk_tif, "junk.tif: not a readable TIFF file"),
    "zarr": (_junk_zarr, "junk.zarr: not a readable OME-Zarr image"),
    "nan": (_nan_mrc, "nan.mrc: 1 of 480 values are NaN or Inf"),
}
# commands that read a volume and write results; BAD / OUT are replaced below
COMMANDS = {
    "preview": ["preview", "BAD", "-o", "OUT/p.png"],
    "preview-labels": ["preview", "GOOD", "--labels", "BAD", "-o", "OUT/p.png"],
    "evaluate": ["evaluate", "BAD", "BAD", "-o", "OUT/r.json"],
    "evaluate-tomogram": ["evaluate", "PICKS", "PICKS", "--tomogram", "BAD", "-o", "OUT/r.json"],
    "convert-tomogram": ["convert", "PICKS", "OUT/p.star", "--to", "star5", "--tomogram", "BAD"],
}


def _snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# where only a tomogram's shape and voxel size are read, its values may be NaN (tested below)
CASES = [(case, command) for case in BAD for command in COMMANDS
         if not (case == "nan" and command.endswith("-tomogram"))]


@pytest.mark.parametrize(("case", "command"), CASES)
def test_bad_volume_writes_nothing(tmp_path, capsys, command, case):
    make, message = BAD[case]
    bad = make(tmp_path)
    good = write_volume(Volume(np.zeros(SHAPE, np.float32), voxel_size=10.0), tmp_path / "good.mrc")
    picks = write_particles(Particles(np.array([[1.0, 2.0, 3.0]])), tmp_path / "picks.csv")
    out = tmp_path / "out"
    out.mkdir()
    replace = {"BAD": str(bad), "GOOD": str(good), "PICKS": str(picks)}
    argv = [replace.get(a, a.replace("OUT", str(out))) for a in COMMANDS[command]]
    before = _snapshot(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cryoseg: error: ") and err.count("\n") == 1, err
    assert message in err
    if case == "random":
        assert "not a readable MRC file" in err or "could not be read" in err
    assert _snapshot(tmp_path) == before


def test_nan_tomogram_is_fine_where_only_its_geometry_is_read(tmp_path, capsys):
    tomo = _nan_mrc(tmp_path)
    picks = write_particles(Particles(np.array([[1.0, 2.0, 3.0]])), tmp_path / "picks.csv")
    out = tmp_path / "p.star"
    assert main(["convert", str(picks), str(out), "--to", "star5", "--tomogram", str(tomo)]) == 0
    # x = 3 in a 10-voxel row at 10 Å: (3 - 5) * 10 Å
    assert "-20.000000" in out.read_text()


def test_nan_preview_can_be_cleaned_on_request(tmp_path, capsys, caplog):
    tomo = _nan_mrc(tmp_path)
    out = tmp_path / "p.png"
    assert main(["preview", str(tomo), "-o", str(out), "--nan-policy", "clean"]) == 0
    assert out.is_file() and "replaced 1 NaN/Inf values" in caplog.text


@pytest.mark.parametrize("argv, message", [
    (["convert", "PICKS", "OUT/p.star", "--to", "star5", "--tomogram", "NOVS"], "p.star: RELION 5 centred "
     "coordinates (Å) needs the voxel size"),
    (["convert", "PICKS", "OUT/p.json", "--tomogram", "NOVS"], "copick locations in Å needs the voxel size"),
    (["evaluate", "PICKS", "PICKS", "--unit", "angstrom", "--tomogram", "NOVS", "-o", "OUT/r.json"],
     "a tolerance in Å needs the voxel size"),
])
def test_missing_voxel_size_where_one_is_needed_writes_nothing(tmp_path, capsys, argv, message):
    novs = write_volume(Volume(np.zeros(SHAPE, np.float32), voxel_size=0.0), tmp_path / "novs.mrc")
    picks = write_particles(Particles(np.array([[1.0, 2.0, 3.0]])), tmp_path / "picks.csv")
    out = tmp_path / "out"
    out.mkdir()
    replace = {"NOVS": str(novs), "PICKS": str(picks)}
    before = _snapshot(tmp_path)
    assert main([replace.get(a, a.replace("OUT", str(out))) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "no voxel size" in err.splitlines()[0]  # the tomogram's missing header value is named first
    assert err.splitlines()[-1].startswith("cryoseg: error: ") and message in err.splitlines()[-1]
    assert _snapshot(tmp_path) == before
