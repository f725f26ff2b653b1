"""Preprocessing: intensity normalisation, model-frame geometry, and the exact coordinate / mask mappings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cryoseg.errors import InputError
from cryoseg.models.preprocess import (
    Geometry,
    logits_to_image,
    longest_side_geometry,
    normalize_intensity,
    patch_geometry,
    stretch_geometry,
    to_model_input,
    to_sam_input,
    to_uint8,
)

shapes = st.tuples(st.integers(1, 700), st.integers(1, 700))
layouts = st.sampled_from(["longest", "stretch"])


def _geometry(shape: tuple[int, int], layout: str, target: int) -> Geometry:
    return longest_side_geometry(shape, target) if layout == "longest" else stretch_geometry(shape, target)


# --- geometry ---------------------------------------------------------------------------------------------


def test_longest_side_geometry_matches_sam_rounding():
    g = longest_side_geometry((500, 800), 1024)
    assert g.resized == (640, 1024) and g.frame == (1024, 1024)
    g = longest_side_geometry((333, 1000), 1024)
    assert g.resized == (int(333 * 1.024 + 0.5), 1024)  # 341, as SAM's processor rounds


def test_patch_geometry_whole_patches():
    g = patch_geometry((300, 700), 518, 14)
    assert g.resized[1] == 518 and g.resized[0] % 14 == 0 and g.frame == g.resized
    assert abs(g.resized[0] - 300 * 518 / 700) <= 7  # at most half a patch of aspect change
    padded = patch_geometry((350, 700), 64, 8, pad_to_target=True)
    assert padded.frame == (64, 64) and padded.resized == (32, 64)
    with pytest.raises(InputError, match="multiple of the patch size"):
        patch_geometry((10, 10), 100, 14)


@settings(max_examples=100, deadline=None)
@given(shapes, layouts, st.sampled_from([64, 1024]), st.data())
def test_point_round_trip(shape, layout, target, data):
    g = _geometry(shape, layout, target)
    H, W = shape
    pts = np.array(data.draw(st.lists(st.tuples(st.floats(-0.5, H - 0.5), st.floats(-0.5, W - 0.5)),
                                      min_size=1, max_size=5)))
    xy = g.points_to_model(pts)
    np.testing.assert_allclose(g.points_from_model(xy), pts, atol=1e-9)
    # the model frame is (x, y): the slice's x lands in column 0, and the slice maps into the content box
    assert np.all(xy[:, 0] >= -0.5 - 1e-9) and np.all(xy[:, 0] <= g.resized[1] - 0.5 + 1e-9)
    assert np.all(xy[:, 1] >= -0.5 - 1e-9) and np.all(xy[:, 1] <= g.resized[0] - 0.5 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(shapes, layouts)
def test_pixel_edges_map_to_content_edges(shape, layout):
    """The slice's outer pixel edges (-0.5 and H - 0.5) land exactly on the resized content's edges."""
    g = _geometry(shape, layout, 1024)
    H, W = shape
    corners = g.points_to_model(np.array([[-0.5, -0.5], [H - 0.5, W - 0.5]]))
    np.testing.assert_allclose(corners[0], [-0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(corners[1], [g.resized[1] - 0.5, g.resized[0] - 0.5], atol=1e-9)


def test_boxes_map_like_their_corners():
    g = longest_side_geometry((50, 80), 64)
    boxes = np.array([[1.0, 2.0, 30.0, 70.0]])
    out = g.boxes_to_model(boxes)
    np.testing.assert_allclose(out[0, :2], g.points_to_model(boxes[0, :2]))
    np.testing.assert_allclose(out[0, 2:], g.points_to_model(boxes[0, 2:]))
    assert out[0, 0] < out[0, 2] and out[0, 1] < out[0, 3]  # (x0, y0, x1, y1)


@pytest.mark.parametrize("layout", ["longest", "stretch"])
def test_prompts_map_as_metas_predictors_scale_them(layout):
    """Prompts: pixel index times scale (segment-anything's apply_coords, SAM 2's transform_coords), which is
    half a pixel times (1 - s) away from the pixel-centre mapping."""
    g = _geometry((45, 70), layout, 64)
    sy, sx = g.scale
    pts = np.array([[10.0, 60.0], [0.0, 0.0], [44.0, 69.0]])
    xy = g.prompts_to_model(pts)
    np.testing.assert_allclose(xy, np.stack([pts[:, 1] * sx, pts[:, 0] * sy], axis=-1))
    np.testing.assert_allclose(xy - g.points_to_model(pts), [[0.5 * (1 - sx), 0.5 * (1 - sy)]] * 3, atol=1e-12)
    boxes = np.array([[1.0, 2.0, 30.0, 65.0]])
    np.testing.assert_allclose(g.prompt_boxes_to_model(boxes)[0], np.r_[g.prompts_to_model(boxes[0, :2]),
                                                                        g.prompts_to_model(boxes[0, 2:])])


# --- masks back to slice pixels -----------------------------------------------------------------------------


def _axis_rule(n: int, resized: int, frame: int, low: int, lo: int, hi: int,
               via_frame: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the `n` slice pixels along one axis and cells [lo, hi) set to +1 (else -1): whether every low-res
    cell the bilinear resampling reads has the same value ("clear"), the expected inside-ness, and ties.

    One step (SAM 2) reads the two cells around each pixel centre; SAM's two steps read the two frame pixels
    around it (clamped to the content), each from its two cells. Where cells differ, the value is linear in
    the position across the edge, so the pixel is inside when its centre is."""
    k = frame / low  # frame pixels per cell
    f = (np.arange(n) + 0.5) * resized / n - 0.5  # frame index coordinate of each pixel centre
    if via_frame:
        f = np.clip(f, 0, resized - 1)
        f0 = np.floor(f).astype(int)
        rows = [f0, np.minimum(f0 + 1, resized - 1)]
    else:
        rows = [f]
    cells = []
    for row in rows:
        u = np.clip((row + 0.5) / k - 0.5, 0, low - 1)
        i0 = np.floor(u).astype(int)
        cells += [i0, np.minimum(i0 + 1, low - 1)]
    ins = [(c >= lo) & (c < hi) for c in cells]
    clear = np.all([i == ins[0] for i in ins], axis=0)
    c = (f + 0.5) / k  # the pixel centre in cell units
    inside = np.where(clear, ins[0], (c > lo) & (c < hi))
    tie = ~clear & ((np.abs(c - lo) < 1e-6) | (np.abs(c - hi) < 1e-6))
    return clear, inside, tie


@settings(max_examples=60, deadline=None)
@given(shapes, layouts, st.sampled_from([(64, 16), (1024, 256)]), st.data())
def test_rectangle_in_model_frame_maps_to_right_rectangle(shape, layout, sizes, data):
    """Logits +1 on a rectangle of low-res cells, -1 elsewhere (a mask in the model frame). A slice pixel
    comes out inside exactly when its centre, mapped into the frame, lies inside the rectangle, through SAM's
    two resizes (longest side) and SAM 2's one (stretch) alike. Judged: every pixel whose bilinear
    neighbourhood is uniform along at least one axis (bilinear rounds the corners, as SAM's own upsampling
    does) and not exactly on an edge."""
    target, low = sizes
    g = _geometry(shape, layout, target)
    y0 = data.draw(st.integers(0, low - 1))
    y1 = data.draw(st.integers(y0 + 1, low))
    x0 = data.draw(st.integers(0, low - 1))
    x1 = data.draw(st.integers(x0 + 1, low))
    logits = -torch.ones(1, low, low)
    logits[0, y0:y1, x0:x1] = 1.0
    mask = (logits_to_image(logits, g)[0] > 0).numpy()
    assert mask.shape == shape
    assert g.masks_via_frame == (layout == "longest")
    clear_y, in_y, tie_y = _axis_rule(shape[0], g.resized[0], target, low, y0, y1, g.masks_via_frame)
    clear_x, in_x, tie_x = _axis_rule(shape[1], g.resized[1], target, low, x0, x1, g.masks_via_frame)
    expected = in_y[:, None] & in_x[None, :]
    judged = (clear_y[:, None] | clear_x[None, :]) & ~(tie_y[:, None] | tie_x[None, :])
    np.testing.assert_array_equal(mask[judged], expected[judged])
    # and the rectangle's bounding box in slice pixels is where the mapped pixel centres fall inside it
    if judged.all() and expected.any():
        rows, cols = np.nonzero(mask)
        assert rows.min() == np.nonzero(in_y)[0].min() and cols.max() == np.nonzero(in_x)[0].max()


def test_logits_to_image_equals_grid_sample_in_one_step():
    """SAM 2 (stretch): the separable one-step resampling is bilinear sampling at the mapped pixel centres."""
    g = stretch_geometry((37, 90), 64)
    logits = torch.randn(3, 16, 16)
    ours = logits_to_image(logits, g)
    sy, sx = g.scale
    gy = 2 * (torch.arange(37, dtype=torch.float64) + 0.5) * sy / 64 - 1
    gx = 2 * (torch.arange(90, dtype=torch.float64) + 0.5) * sx / 64 - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).float()[None].expand(3, -1, -1, -1)
    ref = F.grid_sample(logits[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(37, 90), (90, 37), (64, 64), (20, 20), (300, 1)])
def test_logits_to_image_equals_sams_two_resizes(shape):
    """SAM (longest side): to the whole frame, crop to the content, to the slice, each bilinear
    (align_corners=False), as segment-anything's `Sam.postprocess_masks`; in matrix form, in one go."""
    g = longest_side_geometry(shape, 64)
    logits = torch.randn(3, 16, 16)
    h, w = g.resized
    frame = F.interpolate(logits[:, None], (64, 64), mode="bilinear", align_corners=False)[..., :h, :w]
    ref = F.interpolate(frame, shape, mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(logits_to_image(logits, g), ref, atol=1e-5, rtol=1e-5)
    if shape != g.frame:  # and it is not the one-step sampling (the same when the slice fills the frame)
        one_step = logits_to_image(logits, Geometry(g.original, g.resized, g.frame, masks_via_frame=False))
        assert (one_step - ref).abs().max() > 1e-3


# --- image into the frame -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(20, 200), st.integers(20, 200), layouts, st.data())
def test_bright_block_lands_where_points_map(H, W, layout, data):
    """A bright block in the slice is bright in the model input at the mapped position of its centre."""
    g = _geometry((H, W), layout, 64)
    by = data.draw(st.integers(0, H - 1))
    bx = data.draw(st.integers(0, W - 1))
    size_y = max(1, int(np.ceil(6 / g.scale[0])))  # >= 6 frame pixels so resampling keeps it bright
    size_x = max(1, int(np.ceil(6 / g.scale[1])))
    img = np.zeros((H, W), np.float32)
    y0, x0 = min(by, H - size_y), min(bx, W - size_x)
    img[max(0, y0):max(0, y0) + size_y, max(0, x0):max(0, x0) + size_x] = 1.0
    px = to_model_input(img[None], g, mean=(0, 0, 0), std=(1, 1, 1))
    assert px.shape == (1, 3, 64, 64)
    centre = np.array([max(0, y0) + (size_y - 1) / 2, max(0, x0) + (size_x - 1) / 2])
    x, y = g.points_to_model(centre)
    assert px[0, 0, int(round(y)), int(round(x))] > 0.5
    # padding stays exactly zero
    if g.resized != g.frame:
        assert float(px[0, :, g.resized[0]:, :].abs().sum() + px[0, :, :, g.resized[1]:].abs().sum()) == 0.0
    if layout == "longest":  # SAM's 8-bit PIL resize puts it there too
        px = to_sam_input(img[None], g, mean=(0, 0, 0), std=(1 / 255,) * 3)  # values 0..255
        assert px[0, 0, int(round(y)), int(round(x))] > 127


@settings(max_examples=60, deadline=None)
@given(shapes, st.sampled_from(["longest", "stretch", "patch"]))
@example((300, 1), "longest")  # a one-pixel-wide output: torch's antialiased resize gets it wrong untransposed
def test_image_content_lands_exactly_where_points_map(shape, layout):
    """Resample a y ramp and an x ramp (value = the pixel's own coordinate) into the frame: away from the
    edges (where resampling clamps) each frame pixel holds the slice coordinate that `points_from_model`
    gives for it. This ties the image resize to the prompt mapping to a tenth of a pixel (e.g. an
    align_corners=True resize, or content placed anywhere but the top-left, is off by up to several pixels)."""
    H, W = shape
    g = patch_geometry(shape, 64, 8) if layout == "patch" else _geometry(shape, layout, 64)
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    px = to_model_input(np.stack([yy, xx]), g, mean=(0, 0, 0), std=(1, 1, 1))[:, 0].numpy()
    rows, cols = np.mgrid[: g.resized[0], : g.resized[1]]
    src = g.points_from_model(np.stack([cols, rows], axis=-1).astype(np.float64))  # (h, w, 2) y, x
    for axis, n in ((0, H), (1, W)):
        margin = 1 / g.scale[axis] + 1  # the antialiasing filter's reach, in slice pixels
        inner = (src[..., axis] > margin) & (src[..., axis] < n - 1 - margin)
        if inner.any():
            got = px[axis, : g.resized[0], : g.resized[1]][inner]
            np.testing.assert_allclose(got, src[..., axis][inner], atol=0.1)


def test_to_model_input_normalises_grey_to_three_channels():
    g = longest_side_geometry((32, 64), 64)
    img = np.full((1, 32, 64), 0.5, np.float32)
    px = to_model_input(img, g, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    np.testing.assert_allclose(px[0, :, 0, 0].numpy(), (0.5 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-5)
    assert torch.all(px[0, :, 32:, :] == 0)  # bottom padding
    with pytest.raises(InputError, match="does not match the geometry"):
        to_model_input(np.zeros((1, 10, 10), np.float32), g)


def test_to_sam_input_is_the_8bit_pil_resize_normalised_in_255_units():
    """SAM's input: the [0, 1] slice as round(255 v) in 8 bits, PIL bilinear resize (antialiased when shrinking),
    (v - 255 mean) / (255 std), zero padding bottom and right."""
    rng = np.random.default_rng(0)
    img = rng.random((2, 40, 90)).astype(np.float32)
    img[0, 0, 0], img[0, 0, 1] = 0.5, 0.5 / 255  # 127.5 rounds to 128 (half to even), 0.5 to 0
    u8 = to_uint8(img)
    assert u8.dtype == np.uint8 and u8[0, 0, 0] == 128 and u8[0, 0, 1] == 0 and u8.shape == img.shape
    g = longest_side_geometry((40, 90), 64)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    px = to_sam_input(img, g, mean=mean, std=std)
    assert px.shape == (2, 3, 64, 64) and px.dtype == torch.float32
    h, w = g.resized
    for b in range(2):
        resized = np.asarray(Image.fromarray(u8[b]).resize((w, h), Image.BILINEAR)).astype(np.float32)
        for c in range(3):
            expected = (resized - np.float32(255 * mean[c])) / np.float32(255 * std[c])
            np.testing.assert_allclose(px[b, c, :h, :w].numpy(), expected, rtol=1e-6, atol=1e-6)
    assert torch.all(px[:, :, h:, :] == 0) and torch.all(px[:, :, :, w:] == 0)
    # no resize when the slice already has the frame's longest side
    same = longest_side_geometry((32, 64), 64)
    np.testing.assert_array_equal(to_sam_input(img[0, :32, :64], same, mean=(0,) * 3, std=(1 / 255,) * 3)[0, 0, :32]
                                  .numpy().round(), to_uint8(img[0, :32, :64]))
    with pytest.raises(InputError, match="does not match the geometry"):
        to_sam_input(np.zeros((1, 10, 10), np.float32), g)


# --- intensity ----------------------------------------------------------------------------------------------


def test_normalize_intensity_is_robust_to_outliers_and_offsets():
    rng = np.random.default_rng(0)
    img = rng.normal(5000.0, 20.0, size=(64, 64)).astype(np.float32)
    img[0, 0] = 1e9  # a hot pixel
    out = normalize_intensity(img)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert 0.4 < float(np.median(out)) < 0.6  # the hot pixel did not squash the range
    np.testing.assert_allclose(normalize_intensity(img * 3 - 7), out, atol=1e-5)  # affine invariant
    stack = normalize_intensity(np.stack([img, img * 0 + 2.0]))
    np.testing.assert_allclose(stack[0], out, atol=1e-6)  # per image
    assert np.all(stack[1] == 0)  # a constant image becomes zeros


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.zeros((2, 2, 2, 2)), "2D"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a", "b"]]), "numeric"),
    ],
)
def test_normalize_intensity_rejects_bad_images(image, message):
    with pytest.raises(InputError, match=message):
        normalize_intensity(image)


def test_bad_shapes_and_percentiles():
    with pytest.raises(InputError, match="percentiles"):
        normalize_intensity(np.zeros((4, 4)), (50.0, 10.0))
    with pytest.raises(InputError, match="shape"):
        longest_side_geometry((0, 10), 64)
