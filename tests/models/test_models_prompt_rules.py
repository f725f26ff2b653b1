"""One set of prompt rules (`models.base.check_prompts`) for every segmenter backend: what one refuses, all refuse,
with the same message."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.models import load_segmenter
from cryoseg.models.base import check_prompts

BACKENDS = ["classical", "tiny-sam", "tiny-sam-hq", "tiny-sam2"]
H, W = 40, 56  # non-square on purpose

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    img = np.random.default_rng(0).normal(0.0, 0.3, (H, W))
    yy, xx = np.mgrid[:H, :W]
    img[(yy - 20) ** 2 + (xx - 28) ** 2 <= 64] -= 2.0  # a dark disk
    return img


@pytest.fixture(scope="module")
def embedded(image):
    """name -> (segmenter, embedding of `image`), loaded once for the module."""
    out = {}
    for name in BACKENDS:
        seg = load_segmenter(name)
        out[name] = (seg, seg.embed(image))
    return out


def _logits_shape(seg, embedding) -> tuple[int, int]:
    """The (h, w) of the mask logits `seg` returns, which is the only size it accepts back."""
    return seg.predict(embedding, np.array([[[20.0, 28.0]]]), np.array([[1]])).logits.shape[-2:]


ONE_POINT = (np.array([[[20.0, 28.0]]]), np.array([[1]]))
NO_POINTS = (np.zeros((1, 0, 2)), np.zeros((1, 0), int))

# (case id, points, labels, boxes, what the message says); logits are added per backend below
REFUSED = [
    ("box-partly-outside", *ONE_POINT, np.array([[10.0, 20.0, 30.0, W + 3.0]]),
     f"box corner (y=30, x={W + 3}) lies outside the slice of shape ({H}, {W})"),
    ("box-entirely-outside", *NO_POINTS, np.array([[H + 5.0, 2.0, H + 9.0, 8.0]]),
     f"box corner (y={H + 5}, x=2) lies outside the slice of shape ({H}, {W})"),
    ("box-negative-corner", *NO_POINTS, np.array([[-2.0, 5.0, 10.0, 12.0]]),
     f"box corner (y=-2, x=5) lies outside the slice of shape ({H}, {W})"),
    ("point-outside", np.array([[[20.0, 28.0], [H + 1.0, 3.0]]]), np.array([[1, 1]]), None,
     f"point (y={H + 1}, x=3) lies outside the slice of shape ({H}, {W})"),
    ("negative-point-outside", np.array([[[20.0, 28.0], [3.0, -0.6]]]), np.array([[1, 0]]), None,
     f"point (y=3, x=-0.6) lies outside the slice of shape ({H}, {W})"),
    ("no-points-no-box", *NO_POINTS, None, "every prompt needs at least one point with label 0 or 1, or a box"),
    ("padding-only", np.array([[[5.0, 5.0]]]), np.array([[-1]]), None,
     "every prompt needs at least one point with label 0 or 1, or a box"),
    ("box-upside-down", *ONE_POINT, np.array([[30.0, 10.0, 20.0, 40.0]]), "boxes must satisfy y0 <= y1 and x0 <= x1"),
    ("label-2", np.array([[[5.0, 5.0]]]), np.array([[2]]), None, "point_labels must be 1, 0 or -1 (padding), got [2]"),
    ("nan-point", np.array([[[np.nan, 5.0]]]), np.array([[1]]), None, "points contain NaN or infinite coordinates"),
]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("case", REFUSED, ids=[c[0] for c in REFUSED])
def test_bad_prompts_are_refused_with_the_same_message(embedded, name, case):
    _, points, labels, boxes, message = case
    seg, emb = embedded[name]
    with pytest.raises(InputError) as info:
        seg.predict(emb, points, labels, boxes=boxes)
    assert str(info.value) == message


@pytest.mark.parametrize("name", BACKENDS)
def test_mask_logits_alone_are_not_a_prompt(embedded, name):
    """A mask prior without a point or a box (here: the backend's own logits, of the right shape) is refused."""
    seg, emb = embedded[name]
    logits = seg.predict(emb, *ONE_POINT).logits[:, 0]
    with pytest.raises(InputError, match="every prompt needs at least one point with label 0 or 1, or a box"):
        seg.predict(emb, *NO_POINTS, mask_logits=logits)
    assert seg.predict(emb, *ONE_POINT, mask_logits=logits).masks.shape == (1, 1, H, W)  # with a point: fine


@pytest.mark.parametrize("name", BACKENDS)
def test_mask_logits_of_another_size_are_refused(embedded, name):
    seg, emb = embedded[name]
    h, w = _logits_shape(seg, emb)
    for shape in ((1, h + 1, w), (1, h, w - 1), (1, 2 * h, 2 * w), (2, h, w), (h, w)):
        with pytest.raises(InputError) as info:
            seg.predict(emb, *ONE_POINT, mask_logits=np.zeros(shape, np.float32))
        assert str(info.value) == (f"mask_logits must have shape {(1, h, w)} (the logits this model returns), "
                                   f"got {shape}")
    with pytest.raises(InputError, match="mask_logits contain NaN"):
        seg.predict(emb, *ONE_POINT, mask_logits=np.full((1, h, w), np.nan, np.float32))


@pytest.mark.parametrize("name", BACKENDS)
def test_prompts_on_the_slice_edge_and_box_only_prompts_are_accepted(embedded, name):
    """Pixel i covers [i - 0.5, i + 0.5) (cryoseg.geometry): points there are inside, the far edge itself is not;
    box corners may lie on every edge."""
    seg, emb = embedded[name]
    edge = np.array([[[-0.5, -0.5]], [[H - 0.51, W - 0.51]], [[0.0, W - 0.51]]])
    pred = seg.predict(emb, edge, np.ones((3, 1), int))
    assert pred.masks.shape == (3, 1, H, W)
    with pytest.raises(InputError, match=f"point \\(y={H - 0.5:g}, x=0\\) lies outside the slice"):
        seg.predict(emb, np.array([[[H - 0.5, 0.0]]]), np.ones((1, 1), int))
    whole = seg.predict(emb, *NO_POINTS, boxes=np.array([[-0.5, -0.5, H - 0.5, W - 0.5]]))
    assert whole.masks.shape == (1, 1, H, W)
    padded = seg.predict(emb, np.array([[[20.0, 28.0], [np.nan, 1e9]]]), np.array([[1, -1]]))
    assert padded.masks.shape == (1, 1, H, W)  # padding is not checked


@pytest.mark.parametrize("name", BACKENDS)
def test_no_prompts_give_empty_arrays(embedded, name):
    seg, emb = embedded[name]
    h, w = _logits_shape(seg, emb)
    pred = seg.predict(emb, np.zeros((0, 1, 2)), np.zeros((0, 1), int), multimask=True)
    assert pred.masks.shape == (0, 3, H, W) and pred.logits.shape == (0, 3, h, w) and pred.iou_scores.shape == (0, 3)


def test_check_prompts_returns_the_prompts_as_arrays():
    points = [[[1, 2], [3, 4]]]
    checked = check_prompts((8, 8), points, [[1, 0]], [[0, 0, 7, 7]], np.zeros((1, 4, 4)), (4, 4))
    assert len(checked) == 1
    assert checked.points.dtype == np.float64 and checked.points.shape == (1, 2, 2)
    assert checked.labels.dtype == np.int64 and checked.labels.tolist() == [[1, 0]]
    assert checked.boxes.dtype == np.float64 and checked.boxes.shape == (1, 4)
    assert checked.mask_logits.dtype == np.float32 and checked.mask_logits.shape == (1, 4, 4)
    bare = check_prompts((8, 8), points, [[1, 0]], None, None, (4, 4))
    assert bare.boxes is None and bare.mask_logits is None
