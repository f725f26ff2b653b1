"""Volume round trips (MRC, OME-Zarr, TIFF), real files, dtype policy, statistics and `cryoseg info`."""

from __future__ import annotations

import json
import logging

import mrcfile
import numpy as np
import pytest
import tifffile

from cryoseg.cli.main import main
from cryoseg.errors import InputError
from cryoseg.io import arrays
from cryoseg.io.arrays import chunk_stats
from cryoseg.io.volume import Volume
from cryoseg.io.volumes import read_volume, tomogram_geometry, volume_info, write_volume

ANISO = (20.0, 10.0, 5.0)  # z, y, x in Å


def distinct(shape=(4, 5, 6), dtype=np.float32) -> np.ndarray:
    """Every voxel a different value, so any axis swap or flip shows."""
    return np.arange(np.prod(shape), dtype=dtype).reshape(shape)


@pytest.mark.parametrize("ext", [".mrc", ".rec", ".map", ".st", ".ome.zarr", ".zarr", ".tif", ".tiff"])
def test_round_trip_keeps_data_axes_and_anisotropic_voxel_size(tmp_path, ext):
    vol = Volume(distinct(), voxel_size=ANISO, origin=(100.0, 200.0, 300.0))
    out = write_volume(vol, tmp_path / f"v{ext}")
    back = read_volume(out)
    assert back.shape == (4, 5, 6)
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data, vol.data)
    np.testing.assert_allclose(back.voxel_size, ANISO, rtol=1e-6)
    if ext not in (".tif", ".tiff"):  # TIFF keeps no origin
        np.testing.assert_allclose(back.origin, (100.0, 200.0, 300.0))
    assert back.source == out


def test_mrc_header_is_x_y_z(tmp_path):
    out = write_volume(Volume(distinct(), voxel_size=ANISO, origin=(1.0, 2.0, 3.0)), tmp_path / "v.mrc")
    with mrcfile.open(out) as mrc:
        assert (int(mrc.header.nx), int(mrc.header.ny), int(mrc.header.nz)) == (6, 5, 4)
        assert (float(mrc.voxel_size.x), float(mrc.voxel_size.y), float(mrc.voxel_size.z)) == (5.0, 10.0, 20.0)
        assert (float(mrc.header.origin.x), float(mrc.header.origin.z)) == (3.0, 1.0)
        assert mrc.is_volume()
        assert float(mrc.header.dmax) == 119.0 and float(mrc.header.dmin) == 0.0
        np.testing.assert_array_equal(mrc.data, distinct())


def test_mrc_is_memory_mapped_read_only(tmp_path):
    out = write_volume(Volume(distinct(), voxel_size=3.0), tmp_path / "v.mrc")
    mapped = read_volume(out)
    assert isinstance(mapped.data, np.memmap) and not mapped.data.flags.writeable
    loaded = read_volume(out, mmap=False)
    assert not isinstance(loaded.data, np.memmap)
    np.testing.assert_array_equal(mapped.data, loaded.data)


def test_omezarr_layout_and_pyramid(tmp_path):
    data = np.random.default_rng(0).random((64, 70, 80), dtype=np.float32)
    out = write_volume(Volume(data, voxel_size=ANISO), tmp_path / "v.ome.zarr")
    assert (out / ".zgroup").is_file() and (out / "0" / ".zarray").is_file()  # zarr format 2
    ms = json.loads((out / ".zattrs").read_text())["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert {a["unit"] for a in ms["axes"]} == {"angstrom"}
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]  # 32 < 64 stops the pyramid
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [40.0, 20.0, 10.0]
    import zarr

    level1 = zarr.open_array(str(out / "1"), mode="r")
    assert level1.shape == (32, 35, 40)
    np.testing.assert_allclose(level1[0, 0, 0], data[:2, :2, :2].mean(), rtol=1e-6)


def test_omezarr_pyramid_levels_and_chunked_reads(tmp_path, monkeypatch):
    from cryoseg.io import scratch

    data = np.random.default_rng(1).random((64, 70, 80), dtype=np.float32)
    out = write_volume(Volume(data, voxel_size=ANISO), tmp_path / "v.ome.zarr")
    binned = read_volume(out, level=1)
    assert binned.shape == (32, 35, 40) and binned.voxel_size == (40.0, 20.0, 10.0)
    np.testing.assert_allclose(binned.data[0, 0, 0], data[:2, :2, :2].mean(), rtol=1e-6)
    monkeypatch.setattr(scratch, "SCRATCH_BYTES", 0)  # a tomogram too large for memory: read into a mapped file
    mapped = read_volume(out)
    assert isinstance(mapped.data, np.memmap)
    np.testing.assert_array_equal(mapped.data, data)
    with pytest.raises(InputError, match="no pyramid level 2; the image has levels 0 to 1"):
        read_volume(out, level=2)
    write_volume(Volume(data, voxel_size=ANISO), tmp_path / "v.mrc")
    with pytest.raises(InputError, match="OME-Zarr images only"):
        read_volume(tmp_path / "v.mrc", level=1)


def test_omezarr_labels_downsample_by_picking(tmp_path):
    labels = np.zeros((64, 64, 64), np.int32)
    labels[10:30, 10:30, 10:30] = 7
    out = write_volume(Volume(labels, voxel_size=8.0), tmp_path / "labels.zarr")
    import zarr

    back = read_volume(out)
    assert back.data.dtype == np.int32
    np.testing.assert_array_equal(back.data, labels)
    assert set(np.unique(zarr.open_array(str(out / "1"), mode="r")[...])) == {0, 7}


def test_tiff_is_imagej_with_spacing_in_nm(tmp_path):
    out = write_volume(Volume(distinct(dtype=np.uint16), voxel_size=ANISO), tmp_path / "v.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        assert tif.imagej_metadata["unit"] == "nm"
        assert tif.series[0].shape == (4, 5, 6)
    back = read_volume(out)
    assert back.data.dtype == np.uint16


@pytest.mark.parametrize(
    ("ext", "data", "expected"),
    [
        (".mrc", np.arange(120, dtype=np.int64) * 3, np.int16),  # up to 357: int16, not int8
        (".mrc", np.arange(120, dtype=np.int32) % 100, np.int8),
        (".mrc", np.arange(120, dtype=np.uint8) + 100, np.int16),  # uint8 > 127 is not int8
        (".mrc", np.arange(120) % 2 == 0, np.int8),
        (".mrc", np.arange(120, dtype=np.float64) / 7, np.float32),
        (".tif", np.arange(120, dtype=np.int64), np.uint8),
        (".tif", np.arange(120, dtype=np.int32) - 60, np.int16),
        (".ome.zarr", np.arange(120, dtype=np.int64), np.int64),
    ],
)
def test_dtype_policy(tmp_path, ext, data, expected):
    out = write_volume(Volume(data.reshape(4, 5, 6), voxel_size=1.0), tmp_path / f"v{ext}")
    back = read_volume(out)
    assert back.data.dtype == expected
    np.testing.assert_allclose(back.data, data.reshape(4, 5, 6).astype(np.float64), rtol=1e-6)


def test_wide_labels_go_to_float32_with_warning(tmp_path, caplog):
    data = (np.arange(120, dtype=np.int64) * 1000).reshape(4, 5, 6)  # up to 119000: beyond int16/uint16
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        out = write_volume(Volume(data, voxel_size=1.0), tmp_path / "v.mrc")
    assert "float32" in caplog.text
    back = read_volume(out)
    assert back.data.dtype == np.float32
    np.testing.assert_array_equal(back.data, data)


def test_explicit_dtype(tmp_path):
    out = write_volume(Volume(distinct(), voxel_size=1.0), tmp_path / "v.mrc", dtype="int16")
    back = read_volume(out)
    assert back.data.dtype == np.int16
    np.testing.assert_array_equal(back.data, distinct())


def test_deepfinder_tomogram(shared_data):
    folder = shared_data / "deepfinder_toy"
    vol = read_volume(folder / "tomo1.mrc")
    assert vol.shape == (100, 100, 100) and vol.data.dtype == np.float32
    assert vol.voxel_size == (1.0, 1.0, 1.0) and vol.origin == (0.0, 0.0, 0.0)  # the toy data's header: 1 Å
    # Known voxels; [10, 20, 30] and its transpose [30, 20, 10] differ, so an axis swap shows.
    np.testing.assert_allclose(vol.data[0, 0, :3], [0.41436666, -0.65363103, 0.19085391], rtol=1e-6)
    assert vol.data[10, 20, 30] == pytest.approx(0.6594115, rel=1e-6)
    assert vol.data[30, 20, 10] == pytest.approx(-0.08747013, rel=1e-6)
    stats = volume_info(vol)  # the toy data is normalised: mean 0
    assert stats["mean"] == pytest.approx(0.0, abs=1e-6) and stats["std"] == pytest.approx(0.635997, rel=1e-5)
    assert (stats["min"], stats["max"]) == pytest.approx((-3.438461, 3.802432), rel=1e-6)

    labels = read_volume(folder / "tomo1_labels.mrc")
    assert labels.shape == vol.shape and labels.data.dtype == np.int8 and labels.voxel_size == vol.voxel_size
    voxels_per_class = np.bincount(labels.data.ravel().astype(np.int64))
    assert voxels_per_class.tolist() == [975391, 5113, 1834, 3061, 1631, 2005, 2335, 1981, 2155, 4494]
    # The particle table's centres (z, y, x) lie on voxels of their own class for 14 of the 27 particles (the
    # others are hollow or irregular at their centre); read as x, y, z, only 2 would.
    table = np.loadtxt(folder / "tomo1_particles.csv", delimiter=",", skiprows=1)
    centres, classes = table[:, :3].astype(int), table[:, 3].astype(int)
    assert int(np.sum(labels.data[tuple(centres.T)] == classes)) == 14
    assert np.all(labels.data[tuple(centres[classes <= 2].T)] == classes[classes <= 2])


def test_tomogram_geometry_gives_the_voxel_size_and_shape(tmp_path, caplog):
    path = write_volume(Volume(distinct(), voxel_size=ANISO), tmp_path / "t.mrc")
    assert tomogram_geometry(path) == (ANISO, (4, 5, 6))
    assert tomogram_geometry(path, voxel_size=2) == ((2.0, 2.0, 2.0), (4, 5, 6))  # the user's replaces the header's
    novs = write_volume(Volume(distinct(), voxel_size=0.0), tmp_path / "novs.mrc")
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        assert tomogram_geometry(novs) == (None, (4, 5, 6))
    assert "novs.mrc: the header gives no voxel size; pass --voxel-size" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        assert tomogram_geometry(novs, voxel_size=(3, 2, 1)) == ((3.0, 2.0, 1.0), (4, 5, 6))
    assert caplog.text == ""


def test_cylindra_tiff_voxel_size(shared_data):
    vol = read_volume(shared_data / "cylindra_mt" / "13pf_MT.tif")
    assert vol.shape == (36, 206, 94) and vol.data.dtype == np.uint8
    np.testing.assert_allclose(vol.voxel_size, (10.52, 10.52, 10.52), rtol=1e-4)


def test_isbi_tiff_has_no_voxel_size(shared_data):
    vol = read_volume(shared_data / "isbi2012" / "raw_00-19.tif")
    assert vol.shape == (20, 512, 512) and vol.data.dtype == np.uint8
    assert vol.voxel_size == (0.0, 0.0, 0.0)  # not invented
    with pytest.raises(ValueError, match="raw_00-19.tif: voxel size is missing"):
        vol.require_voxel_size()
    assert read_volume(shared_data / "isbi2012" / "raw_00-19.tif", voxel_size=(500, 40, 40)).voxel_size == (
        500.0, 40.0, 40.0)


def test_voxel_size_override(tmp_path):
    out = write_volume(Volume(distinct(), voxel_size=ANISO), tmp_path / "v.mrc")
    assert read_volume(out, voxel_size=7.5).voxel_size == (7.5, 7.5, 7.5)
    assert read_volume(out, voxel_size=(3, 2, 1)).voxel_size == (3.0, 2.0, 1.0)


def test_chunked_statistics_match_numpy(monkeypatch):
    monkeypatch.setattr(arrays, "SLAB_ELEMENTS", 30)  # many slabs of one plane each
    data = np.random.default_rng(1).normal(5.0, 2.0, (7, 5, 6)).astype(np.float32)
    data[3, 2, 1] = np.nan
    stats = chunk_stats(data)
    finite = data[np.isfinite(data)].astype(np.float64)
    assert stats.nonfinite == 1 and stats.count == finite.size
    assert stats.min == pytest.approx(finite.min()) and stats.max == pytest.approx(finite.max())
    assert stats.mean == pytest.approx(finite.mean()) and stats.std == pytest.approx(finite.std())
    assert len(list(arrays.iter_z_slabs(data.shape))) == 7


def test_volume_info():
    info = volume_info(Volume(distinct(), voxel_size=ANISO, origin=(1.0, 2.0, 3.0)))
    assert info["shape"] == (4, 5, 6) and info["dtype"] == "float32"
    assert info["voxel_size"] == ANISO and info["origin"] == (1.0, 2.0, 3.0)
    assert (info["min"], info["max"]) == (0.0, 119.0)
    assert info["mean"] == pytest.approx(59.5) and info["std"] == pytest.approx(distinct().std())


def test_atomic_writes_leave_only_the_targets(tmp_path):
    vol = Volume(distinct(), voxel_size=1.0)
    for name in ("a.mrc", "b.tif", "c.ome.zarr"):
        write_volume(vol, tmp_path / name)
    write_volume(vol, tmp_path / "c.ome.zarr")  # replacing a directory store is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mrc", "b.tif", "c.ome.zarr"]


def test_cli_info(tmp_path, capsys):
    out = write_volume(Volume(distinct(), voxel_size=ANISO, origin=(0.0, 0.0, 7.0)), tmp_path / "v.mrc")
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 × 5 × 6" in text and "20 10 5" in text and "float32" in text and "119" in text and "0 0 7" in text
    assert main(["info", str(out), "--voxel-size", "2.5"]) == 0
    assert "2.5 2.5 2.5" in capsys.readouterr().out


def test_cli_info_bad_file(tmp_path, capsys):
    bad = tmp_path / "junk.mrc"
    bad.write_bytes(b"\x01" * 2000)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cryoseg: error: ") and "junk.mrc" in err
    assert main(["info", str(bad), "--voxel-size", "1,2"]) == 2
    assert "--voxel-size" in capsys.readouterr().err


def test_cli_info_nan_policy(tmp_path, capsys):
    data = distinct()
    data[0, 0, 0] = np.nan
    out = write_volume(Volume(data, voxel_size=1.0), tmp_path / "nan.mrc")
    assert main(["info", str(out)]) == 2
    assert "1 of 120 values are NaN or Inf" in capsys.readouterr().err
    assert main(["--quiet", "info", str(out), "--nan-policy", "clean"]) == 0
    assert "4 × 5 × 6" in capsys.readouterr().out


def test_read_ngff_05_with_channel_axis_and_nm(tmp_path):
    from cryoseg.io.zarrs import new_array, new_group

    # NGFF 0.5 metadata (under "ome"); the store is zarr format 2 so that zarr 2 (copick's) reads it too
    root = new_group(tmp_path / "v5.ome.zarr")
    data = distinct()[None]
    new_array(root, "s0", data.shape, data.shape, data.dtype)[...] = data
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    transforms = [{"type": "scale", "scale": [1.0, 2.0, 1.0, 0.5]},
                  {"type": "translation", "translation": [0.0, 1.0, 0.0, 0.0]}]
    datasets = [{"path": "s0", "coordinateTransformations": transforms}]
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}
    vol = read_volume(tmp_path / "v5.ome.zarr")
    np.testing.assert_array_equal(vol.data, distinct())
    np.testing.assert_allclose(vol.voxel_size, ANISO)
    np.testing.assert_allclose(vol.origin, (10.0, 0.0, 0.0))


def test_tiff_units_are_converted_to_angstrom(tmp_path):
    data = distinct(dtype=np.uint8)
    tifffile.imwrite(tmp_path / "um.tif", data, imagej=True, resolution=(1000.0, 500.0),
                     metadata={"axes": "ZYX", "unit": "micron", "spacing": 0.002})
    np.testing.assert_allclose(read_volume(tmp_path / "um.tif").voxel_size, (20.0, 20.0, 10.0), rtol=1e-6)
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1e7, 1e7), resolutionunit="CENTIMETER",
                     photometric="minisblack")
    np.testing.assert_allclose(read_volume(tmp_path / "cm.tif").voxel_size, (0.0, 10.0, 10.0), rtol=1e-6)
