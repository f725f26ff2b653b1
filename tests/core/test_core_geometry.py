"""The one geometry: views, slicing and the inside-the-volume rule, at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.geometry import (
    check_views,
    in_plane_axes,
    outside_volume,
    paste_index,
    resolve_indices,
    to_slice,
    to_voxel,
    view_image_shape,
    view_length,
    view_slice,
)

SHAPE = (4, 5, 6)


def test_views_slice_as_numpy_indexing_does():
    vol = np.arange(np.prod(SHAPE)).reshape(SHAPE)
    np.testing.assert_array_equal(view_slice(vol, "z", 2), vol[2])
    np.testing.assert_array_equal(view_slice(vol, "y", 3), vol[:, 3, :])
    np.testing.assert_array_equal(view_slice(vol, "x", 5), vol[:, :, 5])
    assert [view_length(SHAPE, v) for v in "zyx"] == [4, 5, 6]
    assert [view_image_shape(SHAPE, v) for v in "zyx"] == [(5, 6), (4, 6), (4, 5)]
    assert [in_plane_axes(v) for v in "zyx"] == [(1, 2), (0, 2), (0, 1)]
    with pytest.raises(InputError, match="slice 6 is outside view 'x'"):
        view_slice(vol, "x", 6)


def test_points_split_into_slice_and_plane_and_paste_back():
    points = np.array([[1.0, 2.0, 3.0]])
    index, plane = to_slice(points, "y")
    assert index.tolist() == [2.0] and plane.tolist() == [[1.0, 3.0]]
    vol = np.zeros(SHAPE)
    vol[paste_index("y", 2, 1, 3, 0, 2)] = 1
    assert np.argwhere(vol).tolist() == [[1, 2, 0], [1, 2, 1], [2, 2, 0], [2, 2, 1]]


def test_view_names_and_indices_are_checked():
    assert check_views(["x", "z"]) == ("x", "z") and check_views("y") == ("y",)
    for bad in (["z", "z"], [], ["w"]):
        with pytest.raises(InputError, match="views must be distinct"):
            check_views(bad)
    assert resolve_indices(SHAPE, "z", {"z": [3, 1, 3]}).tolist() == [1, 3]
    assert resolve_indices(SHAPE, "x", {"z": [1]}).tolist() == list(range(6))
    with pytest.raises(InputError, match="slice 4 is outside view 'z'"):
        resolve_indices(SHAPE, "z", [4])


def test_inside_rule_at_the_edges():
    """Voxel i covers [i - 0.5, i + 0.5): the same answer for io, prompts, matching and previews."""
    pts = np.array([[-0.5, 0, 0], [-0.51, 0, 0], [3.49, 4.49, 5.49], [3.5, 0, 0], [0, 0, 5.5]])
    assert outside_volume(pts, SHAPE).tolist() == [False, True, False, True, True]
    inside = pts[~outside_volume(pts, SHAPE)]
    assert to_voxel(inside, SHAPE).tolist() == [[0, 0, 0], [3, 4, 5]]
    assert to_voxel(np.array([[0.5, 1.5, 2.5]]), SHAPE).tolist() == [[1, 2, 3]]  # .5 belongs to the next voxel
