"""Orthoview previews: layout and aspect, label overlay pixels, picks, crosshair, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cryoseg.errors import InputError, OverwriteInputError, UnsupportedFormatError
from cryoseg.io import Particles, Volume
from cryoseg.viz import PreviewConfig, label_colour, render_preview, save_preview

SHAPE = (10, 20, 30)  # z, y, x: every panel has a different size


@pytest.fixture
def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(100, 10, SHAPE).astype(np.float32)


def test_png_written_with_orthoview_layout(tmp_path, volume):
    out = save_preview(volume, tmp_path / "p.png", title="hello")
    assert out == tmp_path / "p.png"
    image = np.asarray(Image.open(out))
    rendered = render_preview(volume, title="hello")
    np.testing.assert_array_equal(image, rendered.image)
    assert max(image.shape[:2]) >= PreviewConfig().min_size
    z, y, x = rendered.panels["z"], rendered.panels["y"], rendered.panels["x"]
    # z plane: rows y, columns x; x plane beside it (rows y, columns z); y plane below (rows z, columns x).
    assert (z.height, z.width) == (20 * z.row_scale, 30 * z.col_scale)
    assert (x.height, x.width) == (z.height, 10 * x.col_scale) and x.left > z.left + z.width - 1
    assert (y.height, y.width) == (10 * y.row_scale, z.width) and y.top > z.top + z.height - 1
    assert z.row_scale == z.col_scale == x.col_scale  # isotropic voxels stay square
    assert rendered.point == (5, 10, 15)  # default: the centre
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary folder of the atomic write is gone


def test_anisotropic_voxels_keep_physical_aspect():
    vol = Volume(np.zeros(SHAPE, np.float32), voxel_size=(30.0, 10.0, 10.0))
    r = render_preview(vol)
    z, y = r.panels["z"], r.panels["y"]
    assert y.row_scale == pytest.approx(3 * y.col_scale)  # z voxels drawn three times as tall
    # The whole picture: width ~ (X + 3 Z) : height ~ (Y + 3 Z).
    gap = PreviewConfig().gap
    ratio = (r.image.shape[1] - gap) / (r.image.shape[0] - gap)
    assert ratio == pytest.approx((30 + 30) / (20 + 30), rel=0.02)
    assert z.height / z.width == pytest.approx(20 / 30)


def test_small_volume_scaled_up_large_scaled_down():
    tiny = render_preview(np.zeros((3, 4, 5)))
    assert max(tiny.image.shape[:2]) >= 512
    assert float(tiny.panels["z"].col_scale).is_integer()  # whole factor: voxels stay equal blocks
    big = render_preview(np.zeros((10, 100, 300)), config=PreviewConfig(min_size=100, max_size=200))
    assert max(big.image.shape[:2]) <= 200


def _pixel(r, view, row, col):
    x, y = r.panels[view].pixel(row, col)
    return r.image[y, x].astype(int)


def test_label_overlay_where_labels_and_nowhere_else(volume):
    labels = np.zeros(SHAPE, np.int32)
    # Blocks cut by the planes through the centre (z 5, y 10, x 15), away from the crosshair lines.
    labels[3:7, 2:6, 2:8] = 4  # z plane only
    labels[5, 15:18, 22:26] = 9  # z plane only
    labels[1:4, 2:6, 12:18] = 6  # x plane: rows y 2..5, columns z 1..3
    labels[1:4, 8:12, 22:28] = 7  # y plane: rows z 1..3, columns x 22..27
    plain = render_preview(volume, labels=None)
    over = render_preview(volume, labels=labels)
    for view, (row, col), lab in (("z", (4, 5), 4), ("z", (16, 24), 9), ("x", (4, 2), 6), ("y", (2, 25), 7)):
        before, after = _pixel(plain, view, row, col), _pixel(over, view, row, col)
        alpha = PreviewConfig().overlay_alpha
        expected = np.round((1 - alpha) * before + alpha * np.array(label_colour(lab)))
        np.testing.assert_allclose(after, expected, atol=1)
        assert np.abs(after - before).max() > 5
    # Unlabelled voxels keep their grey value.
    for view, (row, col) in (("z", (17, 5)), ("y", (8, 5)), ("x", (18, 1)), ("x", (4, 8))):
        np.testing.assert_array_equal(_pixel(over, view, row, col), _pixel(plain, view, row, col))
        assert len(set(_pixel(over, view, row, col))) == 1  # grey: r == g == b
    assert label_colour(4) != label_colour(9)


def test_boolean_mask_and_label_volume_accepted(volume):
    mask = np.zeros(SHAPE, bool)
    mask[2:8, 2:6, 2:8] = True
    a = render_preview(volume, labels=mask)
    b = render_preview(volume, labels=Volume(mask.astype(np.uint8)))
    np.testing.assert_array_equal(a.image, b.image)


def test_picks_drawn_as_circles_near_their_planes(volume):
    plain = render_preview(volume)
    pick = Particles(np.array([[5.0, 4.0, 6.0]]))  # on the z plane (z = 5); far from the x plane (x = 15)
    drawn = render_preview(volume, picks=pick, pick_radius=3)
    diff = np.any(drawn.image != plain.image, axis=2)
    z = drawn.panels["z"]
    cx, cy = z.pixel(4.0, 6.0)
    r_px = 3 * z.col_scale
    ys, xs = np.nonzero(diff)
    dist = np.hypot(xs - cx, ys - cy)
    assert diff.sum() > 50
    assert np.all(np.abs(dist - r_px) <= 4)  # every changed pixel lies on the ring
    ring = drawn.image[cy, int(cx + r_px - 1)]
    assert ring[0] > 200 and ring[1] > 180 and ring[2] < 80  # yellow
    # Classes colour the circle; a pick given as a plain array works too.
    by_class = render_preview(volume, picks=Particles(pick.coords, classes=[3]), pick_radius=3)
    assert not np.array_equal(by_class.image, drawn.image)
    as_array = render_preview(volume, picks=pick.coords, pick_radius=3)
    np.testing.assert_array_equal(as_array.image, drawn.image)


def test_pick_circle_is_the_sphere_cross_section(volume):
    pick = np.array([[7.0, 4.0, 6.0]])  # 2 voxels off the z plane
    plain = render_preview(volume)
    r = render_preview(volume, picks=pick, pick_radius=4)
    diff = np.any(r.image != plain.image, axis=2)
    z = r.panels["z"]
    cx, cy = z.pixel(4.0, 6.0)
    ys, xs = np.nonzero(diff[z.top:z.top + z.height, z.left:z.left + z.width])
    radius = np.median(np.hypot(xs + z.left - cx, ys + z.top - cy))
    assert radius == pytest.approx(np.sqrt(16 - 4) * z.col_scale, abs=3)
    far = render_preview(volume, picks=np.array([[9.5, 4.0, 6.0]]), pick_radius=4)  # 4.5 > 4 from z = 5
    zbox = (slice(z.top, z.top + z.height), slice(z.left, z.left + z.width))
    np.testing.assert_array_equal(far.image[zbox], plain.image[zbox])


def test_crosshair_marks_the_point(volume):
    flat = np.zeros(SHAPE, np.float32)
    r = render_preview(flat, point=(2, 3, 4))
    z = r.panels["z"]
    x, y = z.pixel(3, 4)
    assert r.image[y, x + 40].mean() > r.image[y + 40, x + 40].mean()  # on the horizontal line vs off it
    assert r.point == (2, 3, 4)


def test_intensity_scaling_is_robust():
    vol = np.zeros(SHAPE, np.float32)
    vol[:, :, 15:] = 1.0
    vol[0, 0, 0] = 1e9  # one hot pixel must not flatten the picture
    r = render_preview(vol, point=(5, 10, 15))
    assert _pixel(r, "z", 2, 20).mean() > 200 and _pixel(r, "z", 2, 5).mean() < 50


def test_nan_values_are_drawn_black_and_do_not_change_the_scaling():
    vol = np.full(SHAPE, 150.0, np.float32)
    vol[:, :, :3] = 100.0  # the 1st and 99th percentiles: 100 black, 200 white, so 150 is mid grey
    vol[:, :, 28:] = 200.0
    vol[5, :, 3:10] = np.nan  # on the z plane (z = 5) and on row z = 5 of the y plane
    r = render_preview(vol, point=(5, 10, 15))
    assert r.image.dtype == np.uint8 and r.image.shape[2] == 3
    # Voxel centres away from the crosshair lines (row y 10 / column x 15 on z; row z 5 on y) and the labels.
    for row in (4, 8, 14, 18):
        for col in (4, 8):
            assert _pixel(r, "z", row, col).tolist() == [0, 0, 0]  # NaN: black
        for col, grey in ((1, 0), (12, 127), (20, 127), (29, 255)):
            assert _pixel(r, "z", row, col).tolist() == [grey] * 3  # finite values scaled as without the NaN
    px, py = r.panels["y"].pixel(5, 6)  # voxel (z 5, x 6): its centre is on the crosshair, so look just above
    assert r.image[py - 2, px].tolist() == [0, 0, 0] and _pixel(r, "y", 8, 6).tolist() == [127] * 3
    assert _pixel(r, "x", 14, 7).tolist() == [127] * 3  # the x plane (x = 15) holds no NaN


# A zero volume draws black, so every colour in the panels comes from the overlay, the pick or the crosshair.
CUBE_SHAPE = (16, 24, 32)
CUBE = (slice(4, 8), slice(6, 12), slice(20, 26))  # label 3; the planes through POINT all cut it
POINT = (6, 9, 22)


def test_known_label_cube_and_pick_land_on_the_right_pixels():
    labels = np.zeros(CUBE_SHAPE, np.int32)
    labels[CUBE] = 3
    pick = np.array([[6.0, 16.0, 8.0]])  # on the z plane only, away from the cube
    volume = np.zeros(CUBE_SHAPE, np.float32)
    cfg = PreviewConfig()
    r = render_preview(volume, point=POINT, labels=labels)
    with_pick = render_preview(volume, point=POINT, labels=labels, picks=pick, pick_radius=3)
    z, y, x = r.panels["z"], r.panels["y"], r.panels["x"]

    # Layout: z plane top left; x plane to its right sharing its rows; y plane below sharing its columns.
    s = z.col_scale
    assert s == z.row_scale == y.row_scale == x.col_scale and float(s).is_integer()
    assert (z.left, z.top, z.width, z.height) == (0, 0, 32 * s, 24 * s)
    assert (x.left, x.top, x.width, x.height) == (z.width + cfg.gap, 0, 16 * s, z.height)
    assert (y.left, y.top, y.width, y.height) == (0, z.height + cfg.gap, z.width, 16 * s)
    assert r.image.shape == (y.top + y.height, x.left + x.width, 3)
    assert r.image[z.height // 2, z.width + cfg.gap // 2].tolist() == [24, 24, 24]  # the gap: background

    # Overlay: exactly the label colour over black inside the cube's cut, black elsewhere, in every panel.
    overlay = np.round(cfg.overlay_alpha * np.array(label_colour(3))).astype(int).tolist()
    cuts = {"z": labels[POINT[0]], "y": labels[:, POINT[1]], "x": labels[:, :, POINT[2]].T}
    for view, plane in cuts.items():
        panel = r.panels[view]
        line_row, line_col = POINT[panel.row_axis], POINT[panel.col_axis]
        for row in range(3, plane.shape[0]):  # rows 0-2 hold the panel's caption
            for col in range(plane.shape[1]):
                if row == line_row or col == line_col:
                    continue  # the crosshair
                expected = overlay if plane[row, col] == 3 else [0, 0, 0]
                assert _pixel(r, view, row, col).tolist() == expected, (view, row, col)

    # The pick: a ring of `pick_radius` voxels around its (y, x) on the z plane, nothing elsewhere.
    diff = np.any(with_pick.image != r.image, axis=2)
    cx, cy = z.pixel(16, 8)
    radius = 3 * s
    ys, xs = np.nonzero(diff)
    assert np.all(np.abs(np.hypot(xs - cx, ys - cy) - radius) <= 4)
    for angle in np.linspace(0, 2 * np.pi, 24, endpoint=False):  # a closed ring, not an arc
        px, py = int(round(cx + radius * np.cos(angle))), int(round(cy + radius * np.sin(angle)))
        assert diff[py - 2:py + 3, px - 2:px + 3].any(), angle
    assert with_pick.image[cy, cx].tolist() == [0, 0, 0]  # hollow


@pytest.mark.parametrize("kwargs, error, message", [
    ({"point": (10, 5, 5)}, InputError, "outside the volume of shape"),
    ({"point": (-1, 5, 5)}, InputError, "outside the volume"),
    ({"point": (1, 2)}, InputError, "three finite numbers"),
    ({"labels": np.zeros((10, 20, 31))}, InputError, "labels have shape"),
    ({"pick_radius": 0}, InputError, "pick radius must be a positive"),
])
def test_bad_inputs_write_nothing(tmp_path, volume, kwargs, error, message):
    with pytest.raises(error, match=message):
        save_preview(volume, tmp_path / "p.png", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_volume_and_path(tmp_path, volume):
    with pytest.raises(InputError, match="needs a 3D volume"):
        save_preview(np.zeros((4, 5)), tmp_path / "p.png")
    with pytest.raises(UnsupportedFormatError, match="use a .png file name"):
        save_preview(volume, tmp_path / "p.jpg")
    src = tmp_path / "tomo.png"
    src.write_bytes(b"original")
    with pytest.raises(OverwriteInputError, match="refusing to overwrite input"):
        save_preview(Volume(volume, source=src), src)
    assert src.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tomo.png"]


def test_picks_near_an_edge_stay_inside_their_panel(volume):
    plain = render_preview(volume)
    r = render_preview(volume, picks=np.array([[5.0, 19.5, 29.5]]), pick_radius=4)  # corner of the z plane
    diff = np.any(r.image != plain.image, axis=2)
    z = r.panels["z"]
    inside = np.zeros_like(diff)
    inside[z.top:z.top + z.height, z.left:z.left + z.width] = True
    assert diff[inside].any() and not diff[~inside].any()


def test_legend_lists_the_label_colours_shown():
    vol = np.zeros((40, 40, 40), np.float32)
    labels = np.zeros((40, 40, 40), np.int32)
    labels[20, 5:10, 5:10] = 3  # on the z plane
    labels[5:10, 20, 30:35] = 11  # on the y plane
    labels[30:35, 30:35, 30:35] = 5  # on no plane through the centre: not listed
    r = render_preview(vol, labels=labels)
    info = r.image[r.panels["y"].top:, r.panels["x"].left:]  # the panel beside the y plane
    colours = {tuple(c) for c in info.reshape(-1, 3).tolist()}
    assert label_colour(3) in colours and label_colour(11) in colours
    assert label_colour(5) not in colours
    plain = render_preview(vol)
    plain_info = plain.image[plain.panels["y"].top:, plain.panels["x"].left:]
    assert label_colour(3) not in {tuple(c) for c in plain_info.reshape(-1, 3).tolist()}
