"""Particle coordinate I/O: round trips, known values per format, and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cryoseg.errors import CorruptFileError, InputError, OverwriteInputError, UnsupportedFormatError
from cryoseg.io import Particles, read_particles, write_particles
from cryoseg.io.conversions import matrices_to_relion_angles, relion_angles_to_matrices

# Non-cubic shape and anisotropic voxels: swapping any two axes changes every number below.
SHAPE = (30, 50, 70)  # z, y, x
VOXEL = (4.0, 5.0, 6.0)  # Å along z, y, x
EXT = {"star": "star", "star5": "star", "csv": "csv", "copick": "json", "ndjson": "ndjson"}


@pytest.fixture
def picks() -> Particles:
    rng = np.random.default_rng(7)
    n = 6
    coords = rng.uniform([1, 1, 1], [29, 49, 69], size=(n, 3))
    # tilt away from 0/180 and rot/psi away from ±180 so the Euler triple is unique
    orient = np.c_[rng.uniform(-170, 170, n), rng.uniform(10, 170, n), rng.uniform(-170, 170, n)]
    return Particles(coords, classes=np.full(n, 2), scores=rng.uniform(0, 1, n),
                     instance_ids=np.arange(10, 10 + n), orientations=orient, class_names={2: "ribosome"})


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("fmt", ["star", "star5", "csv", "copick", "ndjson"])
def test_round_trip_keeps_every_field_the_format_holds(tmp_path, picks, fmt):
    out = write_particles(picks, tmp_path / f"p.{EXT[fmt]}", fmt=fmt, voxel_size=VOXEL, shape=SHAPE)
    back = read_particles(out, voxel_size=VOXEL, shape=SHAPE)
    np.testing.assert_allclose(back.coords, picks.coords, atol=1e-5)
    np.testing.assert_allclose(back.orientations, picks.orientations, atol=1e-5)
    np.testing.assert_array_equal(back.instance_ids, picks.instance_ids)
    if fmt == "ndjson":  # portal points hold no scores and no class
        assert back.scores is None and back.classes is None
    else:
        np.testing.assert_allclose(back.scores, picks.scores, atol=1e-6)
    if fmt in ("star", "star5", "csv"):
        np.testing.assert_array_equal(back.classes, picks.classes)
    if fmt == "csv":
        assert back.class_names == {2: "ribosome"}
    if fmt == "copick":  # one object per file, identified by name
        assert set(back.class_names.values()) == {"ribosome"}


def test_files_hold_the_documented_units_and_axis_order(tmp_path, picks):
    import starfile

    z, y, x = picks.coords[0]
    star = starfile.read(write_particles(picks, tmp_path / "a.star", voxel_size=VOXEL, shape=SHAPE))
    assert star["rlnCoordinateX"][0] == pytest.approx(x, abs=1e-5)
    assert star["rlnCoordinateZ"][0] == pytest.approx(z, abs=1e-5)
    csv_text = write_particles(picks, tmp_path / "a.csv").read_text().splitlines()
    assert csv_text[0].startswith("z,y,x,class,class_name,score,instance_id,rot,tilt,psi")
    assert [float(v) for v in csv_text[1].split(",")[:3]] == pytest.approx([z, y, x])
    copick = json.loads(write_particles(picks, tmp_path / "a.json", voxel_size=VOXEL).read_text())
    loc = copick["points"][0]["location"]
    assert (loc["x"], loc["y"], loc["z"]) == pytest.approx((x * 6.0, y * 5.0, z * 4.0))  # Å = voxel * size
    assert copick["pickable_object_name"] == "ribosome" and copick["unit"] == "angstrom"
    assert copick["voxel_spacing"] is None  # anisotropic: copick has one spacing, so none is claimed
    first = json.loads(write_particles(picks, tmp_path / "a.ndjson").read_text().splitlines()[0])
    assert first["type"] == "orientedPoint"
    assert (first["location"]["x"], first["location"]["z"]) == pytest.approx((x, z))


def test_relion5_centre_is_size_over_two_hand_computed(tmp_path):
    # voxel (z, y, x) = (10, 20, 30), shape (51, 64, 81), voxel size (10, 8, 6) Å.
    # RELION 5: centred_Å = (voxel - size / 2) * voxel_size per axis:
    #   X = (30 - 40.5) * 6 = -63,  Y = (20 - 32) * 8 = -96,  Z = (10 - 25.5) * 10 = -155.
    import starfile

    p = Particles(np.array([[10.0, 20.0, 30.0]]))
    out = write_particles(p, tmp_path / "r5.star", fmt="star5", voxel_size=(10, 8, 6), shape=(51, 64, 81))
    table = starfile.read(out)
    got = [table[f"rlnCenteredCoordinate{a}Angst"][0] for a in "XYZ"]
    assert got == pytest.approx([-63.0, -96.0, -155.0])
    hand = tmp_path / "hand5.star"
    hand.write_text("data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCenteredCoordinateXAngst #2\n"
                    "_rlnCenteredCoordinateYAngst #3\n_rlnCenteredCoordinateZAngst #4\nTS_01 -63.0 -96.0 -155.0\n")
    back = read_particles(hand, voxel_size=(10, 8, 6), shape=(51, 64, 81))
    np.testing.assert_allclose(back.coords, [[10.0, 20.0, 30.0]])


def test_relion4_hand_written_unnamed_block_and_optics(tmp_path):
    unnamed = tmp_path / "unnamed.star"
    unnamed.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
                       "_rlnAngleRot #4\n_rlnAngleTilt #5\n_rlnAnglePsi #6\n_rlnClassNumber #7\n"
                       "_rlnAutopickFigureOfMerit #8\n12 34 5 10 20 30 3 0.5\n")
    p = read_particles(unnamed)
    np.testing.assert_allclose(p.coords, [[5, 34, 12]])
    np.testing.assert_allclose(p.orientations, [[10, 20, 30]])
    assert p.classes.tolist() == [3] and p.scores.tolist() == [0.5]
    with_optics = tmp_path / "optics.star"
    with_optics.write_text("data_optics\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 10.0\n\n"
                           "data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
                           "_rlnCoordinateZ #4\nTS_1 1 2 3\nTS_2 4 5 6\nTS_2 7 8 9\n")
    with pytest.raises(InputError, match="2 tomograms .*TS_1, TS_2.*--tomo-name"):
        read_particles(with_optics)
    ts2 = read_particles(with_optics, tomo_name="TS_2")
    np.testing.assert_allclose(ts2.coords, [[6, 5, 4], [9, 8, 7]])


def test_relion_origin_shifts_are_applied_and_need_voxel_size(tmp_path):
    path = tmp_path / "shifted.star"
    path.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
                    "_rlnOriginXAngst #4\n_rlnOriginYAngst #5\n_rlnOriginZAngst #6\n10 20 30 12 0 -8\n")
    with pytest.raises(InputError, match=r"shifted\.star.*voxel size"):
        read_particles(path)
    p = read_particles(path, voxel_size=(4.0, 5.0, 6.0))
    np.testing.assert_allclose(p.coords, [[30 + 2, 20, 10 - 2]])  # position = coordinate - origin / pixel size


def test_rotation_matrices_follow_the_portal_and_copick_convention():
    # The CryoET Data Portal ingests RELION (90, 45, 180) as this xyz_rotation_matrix.
    s = np.sqrt(0.5)
    expected = np.array([[0, -s, s], [1, 0, 0], [0, s, s]])
    np.testing.assert_allclose(relion_angles_to_matrices(np.array([[90, 45, 180]]))[0], expected, atol=1e-12)
    np.testing.assert_allclose(matrices_to_relion_angles(expected[None]), [[90, 45, 180]], atol=1e-9)
    with pytest.raises(InputError, match="not rotations"):
        matrices_to_relion_angles(2 * np.eye(3)[None], "m.json")


def test_reads_the_shared_deepfinder_csv(shared_data):
    from cryoseg.io.volumes import read_volume

    toy = shared_data / "deepfinder_toy"
    p = read_particles(toy / "tomo1_particles.csv", shape=(100, 100, 100))
    assert len(p) == 27
    np.testing.assert_array_equal(p.coords[0], [34, 16, 64])  # header z,y,x,class_label; first row 34,16,64,1
    assert p.classes[0] == 1 and np.bincount(p.classes).tolist() == [0] + [3] * 9
    # The coordinates index the label map as [z, y, x]: the first centre lies on a voxel of its own class, and
    # every centre has a voxel of its class within its 3x3x3 neighbourhood (13 of the 27 sit on a background
    # voxel next to their mask). Under any other axis order at most 7 of the 27 would pass.
    labels = np.asarray(read_volume(toy / "tomo1_labels.mrc").data)
    z, y, x = p.coords[0].astype(int)
    assert labels[z, y, x] == 1
    for (z, y, x), cls in zip(p.coords.round().astype(int), p.classes):
        assert cls in labels[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2], (z, y, x, cls)


def test_csv_columns_by_name_in_any_order_and_class_names(tmp_path):
    path = tmp_path / "xyz.csv"
    path.write_text("X, y ,z,class,score\n1,2,3,ribosome,0.9\n4,5,6,proteasome,0.1\n")
    p = read_particles(path)
    np.testing.assert_allclose(p.coords, [[3, 2, 1], [6, 5, 4]])
    assert p.class_names == {1: "proteasome", 2: "ribosome"} and p.classes.tolist() == [2, 1]


@pytest.mark.parametrize("fmt", ["star", "star5", "csv", "copick"])
def test_empty_tables_round_trip(tmp_path, fmt):
    out = write_particles(Particles(np.zeros((0, 3))), tmp_path / f"e.{EXT[fmt]}", fmt=fmt,
                          voxel_size=VOXEL, shape=SHAPE)
    assert len(read_particles(out, voxel_size=VOXEL, shape=SHAPE)) == 0


def test_header_only_csv_is_empty_but_zero_byte_files_are_errors(tmp_path):
    header = tmp_path / "h.csv"
    header.write_text("z,y,x,class\n")
    assert len(read_particles(header)) == 0
    for name in ("zero.csv", "zero.star", "zero.json", "zero.ndjson"):  # one rule for every format
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InputError, match=f"{name}: the file is empty"):
            read_particles(tmp_path / name)
    # so an empty point set is not written as ndjson (it could not be read back)
    with pytest.raises(InputError, match="no particles to write"):
        write_particles(Particles(np.zeros((0, 3))), tmp_path / "e.ndjson")
    assert not (tmp_path / "e.ndjson").exists()


def test_particles_outside_the_volume_are_reported_and_kept(tmp_path, caplog):
    p = Particles(np.array([[1, 1, 1], [29, 1, 1], [1, 1, 75], [-3, 1, 1]], float))
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        out = write_particles(p, tmp_path / "o.csv", shape=SHAPE)
    assert "2 of 4 particles lie outside the volume (30, 50, 70)" in caplog.text
    assert len(read_particles(out, shape=SHAPE)) == 4


@pytest.mark.parametrize(("name", "content", "error", "message"), [
    ("cols.csv", "a,b\n1,2\n", InputError, r"cols\.csv: no coordinate columns z/y/x.*found columns \['a', 'b'\]"),
    ("nan.csv", "z,y,x\n1,2,3\n1,,3\n", InputError, r"nan\.csv: 1 particle\(s\) have missing, NaN .*entries 2"),
    ("text.csv", "z,y,x\n1,2,abc\n", InputError, r"text\.csv: column 'x' holds non-numeric"),
    ("angles.csv", "z,y,x,rot\n1,2,3,4\n", InputError, r"angles\.csv: orientation needs all of rot, tilt, psi"),
    ("garbage.star", b"\x00\x01\xfe\xff", CorruptFileError, r"garbage\.star: no STAR data table"),
    ("trunc.star", "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 3\n4 5\n",
     InputError, r"trunc\.star: 1 particle\(s\) have missing"),
    ("nocoords.star", "data_particles\nloop_\n_rlnAngleRot #1\n1\n", InputError,
     r"nocoords\.star: no particle coordinates found.*rlnAngleRot"),
    ("r5.star", "data_particles\nloop_\n_rlnCenteredCoordinateXAngst #1\n_rlnCenteredCoordinateYAngst #2\n"
     "_rlnCenteredCoordinateZAngst #3\n1 2 3\n", InputError, r"r5\.star: RELION 5 .*needs the voxel size"),
    ("bad.json", "{not json", CorruptFileError, r"bad\.json: not valid JSON"),
    ("other.json", '{"a": 1}', InputError, r"other\.json: not a copick picks file"),
    ("noscale.json", '{"points": [{"location": {"x": 1, "y": 2, "z": 3}}]}', InputError,
     r"noscale\.json: copick locations in Å needs the voxel size"),
    ("nanloc.json", '{"voxel_spacing": 10, "points": [{"location": {"x": NaN, "y": 2, "z": 3}}]}', InputError,
     r"nanloc\.json: 1 particle\(s\) have missing, NaN"),
    ("bad.ndjson", '{"type": "point", "location": {"x": 1, "y": 2, "z": 3}}\n{oops\n', CorruptFileError,
     r"bad\.ndjson: line 2 is not valid JSON"),
    ("mask.ndjson", '{"type": "segmentationMask", "location": {"x": 1, "y": 2, "z": 3}}\n', InputError,
     r"mask\.ndjson: line 1 has type 'segmentationMask'"),
    ("p.xyz", "1 2 3\n", UnsupportedFormatError, r"p\.xyz: cannot tell the coordinate format"),
])
def test_bad_input_files_name_the_file_and_the_problem(tmp_path, name, content, error, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(error, match=message):
        read_particles(path)
    assert _files(tmp_path) == [name]  # nothing written


@pytest.mark.parametrize(("fmt", "kwargs", "message"), [
    ("star5", {"shape": SHAPE}, r"out\.star: RELION 5 centred coordinates \(Å\) needs the voxel size"),
    ("star5", {"voxel_size": VOXEL}, r"out\.star: RELION 5 centred coordinates needs the tomogram shape"),
    ("copick", {}, r"out\.json: copick locations in Å needs the voxel size"),
])
def test_writes_missing_voxel_size_or_shape_write_nothing(tmp_path, picks, fmt, kwargs, message):
    with pytest.raises(InputError, match=message):
        write_particles(picks, tmp_path / f"out.{EXT[fmt]}", fmt=fmt, **kwargs)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("fmt", ["copick", "ndjson"])
def test_single_object_formats_refuse_several_classes(tmp_path, fmt):
    p = Particles(np.ones((3, 3)), classes=np.array([1, 2, 2]))
    with pytest.raises(InputError, match=r"holds one object, but the particles have 2 classes \(1, 2\)"):
        write_particles(p, tmp_path / f"m.{EXT[fmt]}", voxel_size=10.0)
    assert _files(tmp_path) == []


def test_bad_values_and_overwriting_an_input_are_refused(tmp_path, picks):
    bad = Particles(np.ones((1, 3)), scores=np.array([np.nan]))
    with pytest.raises(InputError, match="scores contain NaN"):
        write_particles(bad, tmp_path / "s.csv")
    with pytest.raises(InputError, match="voxel size must be positive"):
        write_particles(picks, tmp_path / "v.json", voxel_size=0.0)
    with pytest.raises(UnsupportedFormatError, match="unknown coordinate format 'xml'"):
        write_particles(picks, tmp_path / "x.csv", fmt="xml")
    assert _files(tmp_path) == []
    source = write_particles(picks, tmp_path / "in.csv")
    before = source.read_text()
    read_particles(source)
    with pytest.raises(OverwriteInputError, match="refusing to overwrite input file"):
        write_particles(picks, source, inputs=[source])
    assert source.read_text() == before and _files(tmp_path) == ["in.csv"]


def test_copick_reads_voxel_spacing_from_the_file_and_applies_translation(tmp_path):
    path = tmp_path / "picks.json"
    transform = [[1, 0, 0, 20.0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    path.write_text(json.dumps({"pickable_object_name": "class_4", "user_id": "u", "session_id": "1",
                                "voxel_spacing": 10.0, "points": [
                                    {"location": {"x": 100.0, "y": 200.0, "z": 300.0}, "transformation_": transform,
                                     "score": 0.25, "instance_id": 7}]}))
    p = read_particles(path)
    np.testing.assert_allclose(p.coords, [[30.0, 20.0, 12.0]])  # x = (100 + 20) / 10
    np.testing.assert_allclose(p.orientations, [[0, 0, 0]], atol=1e-9)
    assert p.classes.tolist() == [4] and p.scores.tolist() == [0.25] and p.instance_ids.tolist() == [7]


def test_picks_read_for_a_tomogram_must_share_its_voxel_spacing(tmp_path, caplog):
    from cryoseg.io import Volume
    from cryoseg.io.coords import read_particles_for

    tomo = Volume(np.zeros((20, 30, 40), np.float32), voxel_size=10.0, source=tmp_path / "tomo.mrc")
    at_10 = write_particles(Particles([(2.0, 3.0, 4.0)]), tmp_path / "at10.json", voxel_size=10.0)
    np.testing.assert_allclose(read_particles_for(at_10, tomo).coords, [[2.0, 3.0, 4.0]])
    at_5 = write_particles(Particles([(2.0, 3.0, 4.0)]), tmp_path / "at5.json", voxel_size=5.0)
    with pytest.raises(InputError, match=r"at5\.json: points were picked at a voxel spacing of 5 Å but the tomogram "
                                         r"of .*tomo\.mrc has 10x10x10 Å voxels"):
        read_particles_for(at_5, tomo)
    # Reading with an explicit voxel size (what `cryoseg convert --voxel-size` does) converts, with a warning.
    with caplog.at_level(logging.WARNING, logger="cryoseg.io.copick"):
        np.testing.assert_allclose(read_particles(at_5, voxel_size=10.0).coords, [[1.0, 1.5, 2.0]])
    assert "file says voxel_spacing 5" in caplog.text
    csv = write_particles(Particles([(2.0, 3.0, 4.0)]), tmp_path / "p.csv")  # no spacing recorded: nothing to check
    np.testing.assert_allclose(read_particles_for(csv, tomo).coords, [[2.0, 3.0, 4.0]])


def test_relion_subtomogram_prerotation_rotates_shifts_and_composes_angles(tmp_path):
    # A_subtomogram for (0, 90, 0) maps the shift (10, 0, 0) Å onto +z: position z = 30 - 10 / 5.
    path = tmp_path / "subtomo.star"
    path.write_text("data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n"
                    "_rlnOriginXAngst #4\n_rlnOriginYAngst #5\n_rlnOriginZAngst #6\n_rlnTomoSubtomogramRot #7\n"
                    "_rlnTomoSubtomogramTilt #8\n_rlnTomoSubtomogramPsi #9\n10 20 30 10 0 0 0 90 0\n")
    p = read_particles(path, voxel_size=5.0)
    np.testing.assert_allclose(p.coords, [[28, 20, 10]], atol=1e-9)
    np.testing.assert_allclose(p.orientations, [[0, 90, 0]], atol=1e-9)
