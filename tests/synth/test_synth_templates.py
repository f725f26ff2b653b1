"""Particle templates: built-in shapes, MRC maps (shared data and a user's own), rescaling, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.synth.templates import BUILTIN_SHAPES, load_templates, resolve_template_paths


def _write_map(path, density, voxel_size):
    import mrcfile

    with mrcfile.new(path) as mrc:
        mrc.set_data(density.astype(np.float32))
        mrc.voxel_size = voxel_size
    return path


def _blob(shape=(40, 40, 40), axes=(6.0, 9.0, 12.0)):
    """A smooth ellipsoid, longest along x: its extent shows the axis order."""
    zz, yy, xx = np.indices(shape) - np.asarray(shape)[:, None, None, None] // 2
    inside = (zz / axes[0]) ** 2 + (yy / axes[1]) ** 2 + (xx / axes[2]) ** 2 <= 1
    return ndimage.gaussian_filter(inside.astype(np.float32), 0.7)


def test_builtin_shapes_need_no_files_and_differ_in_size():
    templates = load_templates(["ribosome", "shell", "dumbbell", "builtin:globule"], 10.0, 0.3)
    assert [t.name for t in templates] == ["ribosome", "shell", "dumbbell", "globule"]
    sizes = [t.mask_voxels for t in templates]
    assert sizes[0] > 1.8 * sizes[1] > 1.8 * sizes[3]  # clearly different classes
    for t in templates:
        assert t.source.startswith("builtin:")
        assert t.mask[tuple(np.round(t.center).astype(int))] == 1  # centre inside (the shell's cavity is closed)
        assert t.density[t.mask > 0].mean() == pytest.approx(1.0, rel=1e-5)
    shell = templates[1]
    # the shell's density is hollow even though its label mask is filled
    assert shell.density[tuple(np.round(shell.center).astype(int))] < 0.1


def test_builtin_shapes_scale_with_the_voxel_size():
    fine, coarse = (load_templates(["ribosome"], vs, 0.3)[0] for vs in (10.0, 20.0))
    assert coarse.radius == pytest.approx(fine.radius / 2, abs=1.5)
    assert coarse.mask_voxels == pytest.approx(fine.mask_voxels / 8, rel=0.35)


def test_user_map_keeps_axis_order_and_is_rescaled(tmp_path):
    path = _write_map(tmp_path / "blob.mrc", _blob(), voxel_size=5.0)
    native = load_templates([str(path)], 5.0, 0.3)[0]
    extent = np.ptp(np.argwhere(native.mask), axis=0)
    assert extent[0] < extent[1] < extent[2]  # z shortest, x longest: nothing transposed
    assert native.name == "blob" and native.source == str(path)
    half = load_templates([str(path)], 10.0, 0.3)[0]  # 5 Å map into a 10 Å tomogram: half the voxels across
    np.testing.assert_allclose(np.ptp(np.argwhere(half.mask), axis=0), extent / 2, atol=1.5)
    override = load_templates([str(path)], 10.0, 0.3, template_voxel_size=10.0)[0]  # header ignored
    np.testing.assert_allclose(np.ptp(np.argwhere(override.mask), axis=0), extent, atol=1.5)


def test_shared_template_folder_gives_one_class_per_map(shared_data):
    folder = shared_data / "templates"
    pairs = resolve_template_paths([str(folder)])
    assert [name for name, _ in pairs] == sorted(p.stem for p in folder.glob("*.mrc"))
    templates = load_templates([str(folder / "4v4r.mrc"), str(folder / "1bxn.mrc")], 10.0, 0.3)
    ribosome, small = templates
    assert ribosome.mask_voxels > 4 * small.mask_voxels  # the 70S ribosome is much larger
    assert 12 < ribosome.radius < 20  # ~250 Å across at 10 Å per voxel


def test_duplicate_names_get_distinct_class_names(tmp_path):
    path = _write_map(tmp_path / "shell.mrc", _blob(), voxel_size=10.0)
    names = [t.name for t in load_templates(["shell", str(path)], 10.0, 0.3)]
    # "shell" as an existing file path is the file, the built-in keeps its name
    assert names == ["shell", "shell_2"]


def test_missing_template_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"template .*nope\.mrc: no such file or folder, and not a built-in shape"):
        load_templates([str(tmp_path / "nope.mrc")], 10.0, 0.3)
    with pytest.raises(InputError, match="ribosome"):  # the message lists the built-in names
        resolve_template_paths(["ribosom"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no density maps"):
        resolve_template_paths([str(tmp_path / "empty")])


def test_map_without_density_or_voxel_size_is_refused(tmp_path):
    empty = _write_map(tmp_path / "zero.mrc", np.zeros((16, 16, 16)), voxel_size=10.0)
    with pytest.raises(InputError, match="zero.mrc: the map has no positive density"):
        load_templates([str(empty)], 10.0, 0.3)
    no_size = _write_map(tmp_path / "nosize.mrc", _blob(), voxel_size=0.0)
    with pytest.raises(InputError, match="nosize.mrc.*no voxel size.*template_voxel_size"):
        load_templates([str(no_size)], 10.0, 0.3)


def test_builtin_names_are_listed():
    assert set(BUILTIN_SHAPES) == {"ribosome", "shell", "dumbbell", "rod", "globule"}
