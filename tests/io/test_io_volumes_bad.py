"""Bad volume input: each case raises a typed one-line error naming the file, and writes nothing."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import tifffile

from cryoseg.errors import CorruptFileError, InputError, OverwriteInputError, UnsupportedFormatError
from cryoseg.io import arrays
from cryoseg.io.volume import Volume
from cryoseg.io.volumes import read_volume, write_volume


def good_mrc(path, data=None, voxel_size=4.0):
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6) if data is None else data
    return write_volume(Volume(data, voxel_size=voxel_size), path)


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.mrc: no such file"):
        read_volume(tmp_path / "nothere.mrc")


def test_unknown_extension(tmp_path):
    (tmp_path / "v.xyz").write_bytes(b"data")
    with pytest.raises(UnsupportedFormatError, match=r"v\.xyz: unsupported volume format '\.xyz'"):
        read_volume(tmp_path / "v.xyz")
    with pytest.raises(UnsupportedFormatError, match=r"out\.h5: unsupported"):
        write_volume(Volume(np.zeros((2, 2, 2))), tmp_path / "out.h5")
    assert files(tmp_path) == ["v.xyz"]


@pytest.mark.parametrize("mmap", [True, False])
def test_truncated_mrc(tmp_path, mmap):
    raw = good_mrc(tmp_path / "full.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[:-40])
    with pytest.raises(CorruptFileError, match=r"cut\.mrc: truncated MRC file: the header describes 1504 bytes "
                                               r"but the file holds 1464$"):
        read_volume(tmp_path / "cut.mrc", mmap=mmap)


@pytest.mark.parametrize("permissive", [False, True])
def test_random_bytes_mrc(tmp_path, permissive):
    (tmp_path / "rand.mrc").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(CorruptFileError, match=r"rand\.mrc: .*(not a readable MRC file|could not be read)") as err:
        read_volume(tmp_path / "rand.mrc", permissive=permissive)
    assert "\n" not in str(err.value)


def test_malformed_header_needs_permissive(tmp_path, caplog):
    raw = bytearray(good_mrc(tmp_path / "v.mrc").read_bytes())
    raw[208:212] = b"XXXX"  # the MAP ID string
    (tmp_path / "badid.mrc").write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match=r"badid\.mrc: not a readable MRC file .*try permissive=True"):
        read_volume(tmp_path / "badid.mrc")
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        vol = read_volume(tmp_path / "badid.mrc", permissive=True)
    assert "Map ID" in caplog.text
    np.testing.assert_array_equal(vol.data, np.arange(120, dtype=np.float32).reshape(4, 5, 6))


def test_directory_named_like_a_file(tmp_path):
    (tmp_path / "dir.mrc").mkdir()
    with pytest.raises(InputError, match=r"dir\.mrc: is a directory, not a MRC file"):
        read_volume(tmp_path / "dir.mrc")


def test_2d_mrc_and_tiff(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "image.mrc") as mrc:
        mrc.set_data(np.zeros((5, 6), np.float32))
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((5, 6), np.uint8))
    for name in ("image.mrc", "image.tif"):
        with pytest.raises(InputError, match=rf"image\.{name[-3:]}: a single 2D image of shape \(5, 6\), not a 3D"):
            read_volume(tmp_path / name)


def test_4d_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "hyper.tif", np.zeros((2, 3, 5, 6), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    with pytest.raises(InputError, match=r"hyper\.tif: expected a 3D volume \(z, y, x\), got an array of shape "
                                         r"\(2, 3, 5, 6\)"):
        read_volume(tmp_path / "hyper.tif")
    # singleton extra axes are fine
    tifffile.imwrite(tmp_path / "single.tif", np.zeros((1, 3, 5, 6), np.uint8), imagej=True,
                     metadata={"axes": "TZYX"})
    assert read_volume(tmp_path / "single.tif").shape == (3, 5, 6)


def test_rgb_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((5, 6, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: an RGB/multi-sample image"):
        read_volume(tmp_path / "rgb.tif")


def test_corrupt_tiff(tmp_path):
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 100)
    with pytest.raises(CorruptFileError, match=r"junk\.tif: not a readable TIFF file"):
        read_volume(tmp_path / "junk.tif")


def test_corrupt_omezarr(tmp_path):
    (tmp_path / "junk.zarr").mkdir()
    (tmp_path / "junk.zarr" / ".zgroup").write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"junk\.zarr: not a readable OME-Zarr image"):
        read_volume(tmp_path / "junk.zarr")
    from cryoseg.io.zarrs import new_group

    new_group(tmp_path / "plain.zarr")
    with pytest.raises(CorruptFileError, match=r"plain\.zarr: a zarr group without OME-Zarr 'multiscales'"):
        read_volume(tmp_path / "plain.zarr")


@pytest.mark.parametrize("ext", [".mrc", ".ome.zarr"])
def test_nan_is_refused_with_count_and_hint(tmp_path, ext, monkeypatch):
    monkeypatch.setattr(arrays, "SLAB_ELEMENTS", 30)  # the check runs slab by slab
    data = np.ones((4, 5, 6), np.float32)
    data[0, 0, 0], data[3, 4, 5] = np.nan, np.inf
    path = write_volume(Volume(data, voxel_size=1.0), tmp_path / f"v{ext}")
    with pytest.raises(InputError, match=re.escape(f"v{ext}: 2 of 120 values are NaN or Inf; pass nan_policy='clean'")):
        read_volume(path)


def test_nan_clean_replaces_with_mean_and_warns(tmp_path, caplog):
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    data[1, 2, 3] = np.nan
    path = write_volume(Volume(data, voxel_size=1.0), tmp_path / "v.mrc")
    before = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        vol = read_volume(path, nan_policy="clean")
    assert "replaced 1 NaN/Inf values" in caplog.text
    assert np.isfinite(vol.data).all()
    assert vol.data[1, 2, 3] == pytest.approx(np.nanmean(data))
    assert vol.data[0, 0, 1] == 1.0
    assert path.read_bytes() == before  # the file is untouched


def test_bad_nan_policy_and_override(tmp_path):
    path = good_mrc(tmp_path / "v.mrc")
    with pytest.raises(InputError, match="nan_policy must be 'raise' or 'clean'"):
        read_volume(path, nan_policy="ignore")
    for bad in (0, -1.0, (1.0, 2.0), float("nan")):
        with pytest.raises(InputError, match="voxel size override must be one positive number or three"):
            read_volume(path, voxel_size=bad)


def test_zero_voxel_size_is_kept_but_not_usable(tmp_path):
    path = good_mrc(tmp_path / "v.mrc", voxel_size=0.0)
    vol = read_volume(path)
    assert vol.voxel_size == (0.0, 0.0, 0.0)
    with pytest.raises(InputError, match=r"v\.mrc: voxel size is missing or invalid"):
        vol.require_voxel_size()
    # the same through OME-Zarr and TIFF: unknown stays unknown
    for name in ("v.ome.zarr", "v.tif"):
        assert read_volume(write_volume(vol, tmp_path / name)).voxel_size == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("name", ["in.mrc", "in.tif", "in.ome.zarr"])
def test_writing_onto_an_input_is_refused(tmp_path, name):
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    path = write_volume(Volume(data, voxel_size=2.0), tmp_path / name)
    snapshot = {p: p.read_bytes() for p in sorted([path, *path.rglob("*")]) if p.is_file()}
    vol = read_volume(path)
    with pytest.raises(OverwriteInputError, match=rf"refusing to overwrite input file .*{name}"):
        write_volume(Volume(data * 2, voxel_size=2.0), path, inputs=[path])
    with pytest.raises(OverwriteInputError):  # the volume's own source, too
        write_volume(vol, tmp_path / name)
    assert {p: p.read_bytes() for p in sorted([path, *path.rglob("*")]) if p.is_file()} == snapshot
    assert files(tmp_path) == [name]


def test_explicit_inputs_are_protected(tmp_path):
    other = tmp_path / "other.mrc"
    other.write_bytes(b"precious")
    with pytest.raises(OverwriteInputError):
        write_volume(Volume(np.zeros((2, 2, 2), np.float32)), other, inputs=[other])
    with pytest.raises(OverwriteInputError):  # a volume's source is an input even if not read here
        write_volume(Volume(np.zeros((2, 2, 2), np.float32), source=other), other)
    assert other.read_bytes() == b"precious" and files(tmp_path) == ["other.mrc"]


def test_unstorable_dtype_writes_nothing(tmp_path):
    vol = Volume(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(UnsupportedFormatError, match=r"v\.mrc: mrc cannot store dtype int32; use one of"):
        write_volume(vol, tmp_path / "v.mrc", dtype="int32")
    with pytest.raises(UnsupportedFormatError, match=r"c\.tif: cannot write complex64 data as tiff"):
        write_volume(Volume(np.zeros((2, 3, 4), np.complex64)), tmp_path / "c.tif")
    assert files(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    from cryoseg.io import mrc

    def broken(data, path, *args):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mrc, "write_mrc", broken)
    with pytest.raises(OSError, match="disk full"):
        write_volume(Volume(np.zeros((2, 3, 4), np.float32)), tmp_path / "v.mrc")
    assert files(tmp_path) == []


def test_multichannel_omezarr(tmp_path):
    from cryoseg.io.zarrs import new_array, new_group

    root = new_group(tmp_path / "two.ome.zarr")
    new_array(root, "0", (2, 4, 5, 6), (2, 4, 5, 6), np.float32)
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space", "unit": "angstrom"} for n in "zyx"]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    with pytest.raises(InputError, match=r"two\.ome\.zarr: OME-Zarr axis 'c' has 2 entries; cryoseg reads one 3D"):
        read_volume(tmp_path / "two.ome.zarr")


def test_geometry_read_skips_the_value_check_but_not_the_file_checks(tmp_path):
    from cryoseg.io.volumes import read_volume_geometry

    data = np.ones((4, 5, 6), np.float32)
    data[0, 0, 0] = np.nan
    path = write_volume(Volume(data, voxel_size=(3.0, 2.0, 1.0)), tmp_path / "nan.mrc")
    with pytest.raises(InputError, match="NaN or Inf"):
        read_volume(path)
    vol = read_volume_geometry(path, voxel_size=(6.0, 5.0, 4.0))
    assert vol.shape == (4, 5, 6) and vol.voxel_size == (6.0, 5.0, 4.0) and np.isnan(vol.data[0, 0, 0])
    assert read_volume_geometry(path).voxel_size == (3.0, 2.0, 1.0)
    (tmp_path / "cut.mrc").write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CorruptFileError, match=r"cut\.mrc: truncated MRC file"):
        read_volume_geometry(tmp_path / "cut.mrc")
    assert files(tmp_path) == ["cut.mrc", "nan.mrc"]


def test_missing_omezarr_chunks_are_reported(tmp_path, caplog):
    import logging

    data = np.zeros((70, 10, 10), np.float32)  # two chunks along z, both zero: both stored all the same
    path = write_volume(Volume(data, voxel_size=10.0), tmp_path / "v.ome.zarr")
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        read_volume(path)
    assert "chunks are not stored" not in caplog.text
    chunk_files = sorted(p for p in (path / "0").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert len(chunk_files) == 2
    chunk_files[1].unlink()  # an incomplete copy
    with caplog.at_level(logging.WARNING, logger="cryoseg"):
        read_volume(path)
    assert "v.ome.zarr: 1 of 2 chunks are not stored and read as the fill value 0" in caplog.text
