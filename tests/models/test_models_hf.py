"""Every transformers backend through its tiny config: save to a folder, load by the registry, run."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cryoseg.errors import InputError
from cryoseg.models import FeatureMap, MaskPrediction, load_feature_extractor, load_segmenter
from cryoseg.models.tiny import build_tiny_model

SEGMENTERS = ["tiny-sam", "tiny-sam-hq", "tiny-sam2"]
EXTRACTORS = ["tiny-dinov2", "tiny-dinov2-reg", "tiny-dinov3", "tiny-mae", "tiny-sam-encoder"]
H, W = 45, 70  # non-square on purpose


pytestmark = pytest.mark.usefixtures("one_torch_thread", "isolated_home")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Each tiny model saved in transformers format (the SAM encoder is saved as the whole SamModel)."""
    root = tmp_path_factory.mktemp("tiny-models")
    out = {}
    for name in SEGMENTERS + EXTRACTORS:
        out[name] = root / name
        build_tiny_model(name, seed=7).save_pretrained(out[name])
    return out


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.normal(100.0, 5.0, size=(H, W)).astype(np.float32)
    img[10:25, 30:50] += 40.0  # a bright object
    return img


def _prompts() -> tuple[np.ndarray, np.ndarray]:
    points = np.array([[[15.0, 40.0], [40.0, 5.0]], [[30.0, 60.0], [2.0, 2.0]], [[5.0, 10.0], [20.0, 35.0]]])
    labels = np.array([[1, 0], [1, 1], [1, -1]])
    return points, labels


# --- segmenters -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_loads_from_folder_and_predicts(name, folders, image):
    seg = load_segmenter(name, weights=folders[name], device="cpu")
    emb = seg.embed(image)
    assert emb.image_shape == (H, W)
    points, labels = _prompts()
    for multimask, m in ((True, 3), (False, 1)):
        pred = seg.predict(emb, points, labels, multimask=multimask)
        assert isinstance(pred, MaskPrediction)
        assert pred.masks.shape == (3, m, H, W) and pred.masks.dtype == bool
        assert pred.logits.shape == (3, m, *seg.low_res) and pred.logits.dtype == np.float32
        assert pred.iou_scores.shape == (3, m) and pred.iou_scores.dtype == np.float32
        assert np.isfinite(pred.logits).all() and np.isfinite(pred.iou_scores).all()
        assert 0 < pred.masks.sum() < pred.masks.size  # neither empty nor everything
    # the folder's weights were loaded (seed 7), not the built-in seed-0 model's
    builtin = load_segmenter(name)
    other = builtin.predict(builtin.embed(image), points, labels)
    assert not np.allclose(other.logits, seg.predict(emb, points, labels).logits)
    sha = hashlib.sha256((folders[name] / "model.safetensors").read_bytes()).hexdigest()
    assert seg.signature()["weights"] == f"sha256:{sha}"
    assert builtin.signature()["weights"].startswith(f"builtin:{name}:")


@pytest.mark.parametrize("name", SEGMENTERS)
def test_batched_decoding_equals_one_prompt_at_a_time(name, image, monkeypatch):
    seg = load_segmenter(name)
    emb = seg.embed(image)
    points, labels = _prompts()
    boxes = np.array([[5.0, 20.0, 30.0, 60.0], [0.0, 0.0, 44.0, 69.0], [10.0, 10.0, 12.0, 40.0]])
    prior = np.random.default_rng(1).normal(size=(3, *seg.low_res)).astype(np.float32)
    calls = []
    forward = seg.model.forward
    monkeypatch.setattr(seg.model, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    batched = seg.predict(emb, points, labels, boxes=boxes, mask_logits=prior, multimask=True)
    assert len(calls) == 1  # the three prompts went through the decoder together
    for i in range(3):
        single = seg.predict(emb, points[i:i + 1], labels[i:i + 1], boxes=boxes[i:i + 1],
                             mask_logits=prior[i:i + 1], multimask=True)
        np.testing.assert_allclose(single.logits[0], batched.logits[i], atol=1e-4)
        np.testing.assert_allclose(single.iou_scores[0], batched.iou_scores[i], atol=1e-4)
        np.testing.assert_array_equal(single.masks[0], batched.masks[i])


@pytest.mark.parametrize("name", SEGMENTERS)
def test_every_prompt_kind_changes_the_output(name, image):
    seg = load_segmenter(name)
    emb = seg.embed(image)
    pts = np.array([[[15.0, 40.0]]])
    base = seg.predict(emb, pts, np.array([[1]]))

    def differs(pred: MaskPrediction) -> bool:
        return not np.allclose(pred.logits, base.logits, atol=1e-3)

    assert differs(seg.predict(emb, np.array([[[35.0, 5.0]]]), np.array([[1]])))  # another point
    assert differs(seg.predict(emb, pts, np.array([[0]])))  # the same point as a negative
    assert differs(seg.predict(emb, np.array([[[15.0, 40.0], [30.0, 60.0]]]), np.array([[1, 0]])))  # plus a negative
    assert differs(seg.predict(emb, pts, np.array([[1]]), boxes=np.array([[5.0, 20.0, 30.0, 60.0]])))
    assert differs(seg.predict(emb, pts, np.array([[1]]), mask_logits=base.logits[:, 0]))
    box_only = seg.predict(emb, np.zeros((1, 0, 2)), np.zeros((1, 0), int), boxes=np.array([[5.0, 20.0, 30.0, 60.0]]))
    assert box_only.masks.shape == (1, 1, H, W)
    other_image = seg.embed(np.random.default_rng(5).random((H, W)))
    assert not np.allclose(seg.predict(other_image, pts, np.array([[1]])).logits, base.logits, atol=1e-3)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_embedding_arrays_round_trip_for_the_cache(name, image):
    seg = load_segmenter(name)
    emb = seg.embed(image)
    arrays = seg.embedding_arrays(emb)
    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape[0] == 1 for a in arrays.values())
    restored = seg.embedding_from_arrays({k: v.astype(np.float16) for k, v in arrays.items()}, (H, W))
    points, labels = _prompts()
    a, b = seg.predict(emb, points, labels), seg.predict(restored, points, labels)
    np.testing.assert_allclose(a.logits, b.logits, atol=0.05)
    with pytest.raises(InputError, match="cached embedding has arrays"):
        seg.embedding_from_arrays({"data": np.zeros(3)}, (H, W))


@pytest.mark.parametrize(("name", "expected_xy"), [
    # SAM: longest side 70 -> 64 and 45 -> round(41.1) = 41 rows; SAM 2: stretch to 64 x 64.
    # Both scale the pixel index, as Meta's predictors do (apply_coords / transform_coords).
    ("tiny-sam", (60 * 64 / 70, 10 * 41 / 45)),
    ("tiny-sam2", (60 * 64 / 70, 10 * 64 / 45)),
])
def test_prompts_reach_the_model_as_xy_in_its_frame(name, expected_xy, image, monkeypatch):
    seg = load_segmenter(name)
    emb = seg.embed(image)
    seen = {}
    original = seg.model.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(seg.model, "forward", spy)
    seg.predict(emb, np.array([[[10.0, 60.0]]]), np.array([[0]]), boxes=np.array([[10.0, 60.0, 20.0, 65.0]]))
    np.testing.assert_allclose(seen["input_points"][0, 0, 0].numpy(), expected_xy, atol=1e-5)
    assert seen["input_labels"][0, 0, 0].item() == 0  # a negative point stays negative
    np.testing.assert_allclose(seen["input_boxes"][0, 0, :2].numpy(), expected_xy, atol=1e-5)
    assert seen["input_points"].shape == (1, 1, 1, 2) and seen["input_boxes"].shape == (1, 1, 4)


@pytest.mark.parametrize("name", ["tiny-sam", "tiny-sam2"])
def test_low_res_mask_maps_back_to_the_slice(name, image, monkeypatch):
    """Feed a known low-res logit rectangle through predict: the slice mask is that rectangle mapped back."""
    seg = load_segmenter(name)
    emb = seg.embed(image)
    h, w = seg.low_res
    low = -torch.ones(1, 1, 1, h, w)
    low[..., : h // 2, : w // 2] = 1.0  # top-left quarter of the model frame

    def fake(*args, **kwargs):
        return SimpleNamespace(pred_masks=low.clone(), iou_scores=torch.full((1, 1, 1), 0.9))

    monkeypatch.setattr(seg.model, "forward", fake)
    pred = seg.predict(emb, np.array([[[1.0, 1.0]]]), np.array([[1]]))
    geom = seg.geometry((H, W))
    sy, sx = geom.scale
    # slice pixels whose centres map into the frame's top-left quarter
    rows = (np.arange(H) + 0.5) * sy < geom.frame[0] / 2
    cols = (np.arange(W) + 0.5) * sx < geom.frame[1] / 2
    np.testing.assert_array_equal(pred.masks[0, 0], rows[:, None] & cols[None, :])
    np.testing.assert_allclose(pred.logits[0, 0], low[0, 0, 0].numpy())
    assert pred.iou_scores[0, 0] == pytest.approx(0.9)


def test_inference_runs_in_inference_mode(image, monkeypatch):
    """embed, predict and extract call the network under torch.inference_mode (no autograd bookkeeping)."""
    seen = []

    def spy_on(obj, attr):
        inner = getattr(obj, attr)
        monkeypatch.setattr(obj, attr, lambda *a, **k: seen.append(torch.is_inference_mode_enabled()) or inner(*a, **k))

    seg = load_segmenter("tiny-sam-hq")
    spy_on(seg.model, "get_image_embeddings")
    spy_on(seg.model, "forward")
    seg.predict(seg.embed(image), np.array([[[4.0, 4.0]]]), np.array([[1]]))
    ext = load_feature_extractor("tiny-dinov2-reg", batch_size=1)
    spy_on(ext.model, "forward")
    ext.extract(np.stack([image, image]))
    assert seen == [True] * 4 and not torch.is_inference_mode_enabled()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_paths_mix_dtypes_correctly(dtype, image):
    """The GPU half-precision path, run on the CPU by building the wrappers directly (the loaders refuse half
    precision on a CPU): prompts, priors, cached arrays and MAE's noise must meet the model in its dtype."""
    from cryoseg.models.hf_features import HFFeatureExtractor
    from cryoseg.models.hf_segmenters import HFPromptableSegmenter

    for name, family in (("tiny-sam", "sam"), ("tiny-sam-hq", "sam-hq"), ("tiny-sam2", "sam2")):
        seg = HFPromptableSegmenter(build_tiny_model(name).to(dtype), family, name, "test")
        emb = seg.embedding_from_arrays(seg.embedding_arrays(seg.embed(image)), (H, W))
        points, labels = _prompts()
        boxes = np.array([[5.0, 20.0, 30.0, 60.0], [0.0, 0.0, 44.0, 69.0], [10.0, 10.0, 12.0, 40.0]])
        first = seg.predict(emb, points, labels, boxes=boxes, multimask=True)
        again = seg.predict(emb, points, labels, mask_logits=first.logits[:, 0])
        assert first.logits.dtype == np.float32 and np.isfinite(again.logits).all(), name
        assert seg.signature()["dtype"] == str(dtype).removeprefix("torch.")
    for name, family in (("tiny-mae", "mae"), ("tiny-dinov2-reg", "dinov2-reg")):
        ext = HFFeatureExtractor(build_tiny_model(name).to(dtype), family, name, "test", 64)
        fm = ext.extract(np.stack([image, image]))
        assert fm.features.dtype == np.float32 and np.isfinite(fm.features).all(), name


def test_predict_with_no_prompts_returns_empty_arrays(image):
    seg = load_segmenter("tiny-sam")
    pred = seg.predict(seg.embed(image), np.zeros((0, 1, 2)), np.zeros((0, 1), int), multimask=True)
    assert pred.masks.shape == (0, 3, H, W) and pred.logits.shape == (0, 3, *seg.low_res)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(points=np.zeros((2, 2)), point_labels=np.ones((2,), int)), r"points must have shape \(B, P, 2\)"),
    (dict(points=np.zeros((2, 1, 2)), point_labels=np.ones((2, 2), int)), "point_labels must have shape"),
    (dict(points=np.zeros((1, 1, 2)), point_labels=np.array([[2]])), "must be 1, 0 or -1"),
    (dict(points=np.array([[[50.0, 3.0]]]), point_labels=np.array([[1]])), r"outside the slice of shape \(45, 70\)"),
    (dict(points=np.array([[[np.nan, 3.0]]]), point_labels=np.array([[1]])), "NaN"),
    (dict(points=np.array([[[5.0, 3.0]]]), point_labels=np.array([[-1]])), "at least one point"),
    (dict(points=np.array([[[5.0, 3.0]]]), point_labels=np.array([[1]]), boxes=np.array([[9.0, 0, 1, 5]])),
     "y0 <= y1"),
    (dict(points=np.array([[[5.0, 3.0]]]), point_labels=np.array([[1]]), mask_logits=np.zeros((1, 8, 8))),
     "mask_logits must have shape"),
])
def test_predict_rejects_bad_prompts(kwargs, message, image):
    seg = load_segmenter("tiny-sam")
    emb = seg.embed(image)
    with pytest.raises(InputError, match=message):
        seg.predict(emb, **kwargs)


def test_embed_rejects_non_2d_and_nan():
    seg = load_segmenter("tiny-sam")
    with pytest.raises(InputError, match="2D"):
        seg.embed(np.zeros((2, 8, 8)))
    with pytest.raises(InputError, match="NaN"):
        seg.embed(np.full((8, 8), np.nan))


# --- feature extractors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXTRACTORS)
def test_extractor_loads_from_folder_and_extracts(name, folders, image):
    ext = load_feature_extractor(name, weights=folders[name], device="cpu", batch_size=2)
    images = np.stack([image, image[::-1], image * 3 + 10])
    fm = ext.extract(images)
    assert isinstance(fm, FeatureMap)
    # longest side 70 -> 64 px = 8 patches of 8; 45 -> 41 px -> 5 patches
    assert fm.features.shape == (3, ext.feature_dim, 5, 8) and fm.features.dtype == np.float32
    assert np.isfinite(fm.features).all()
    assert fm.stride == pytest.approx((H / 5, W / 8)) and fm.image_shape == (H, W) and fm.patch_size == 8
    assert not np.allclose(fm.features[0], fm.features[1], atol=1e-3)  # content matters
    np.testing.assert_allclose(fm.features[0], fm.features[2], atol=1e-4)  # intensity range does not
    one = ext.extract(images[1:2])
    np.testing.assert_allclose(one.features[0], fm.features[1], atol=1e-4)  # batching does not
    builtin = load_feature_extractor(name)
    assert not np.allclose(builtin.extract(images[:1]).features, fm.features[:1], atol=1e-3)
    assert ext.signature()["weights"].startswith("sha256:")


@pytest.mark.parametrize(("name", "prefix"), [("tiny-dinov2", 1), ("tiny-dinov2-reg", 5), ("tiny-dinov3", 5)])
def test_cls_and_register_tokens_are_dropped(name, prefix, image, monkeypatch):
    """Patch tokens are taken after CLS + registers and laid out row-major."""
    ext = load_feature_extractor(name)
    assert ext.num_prefix_tokens == prefix
    n = 5 * 8

    def fake(pixel_values, **kwargs):
        tokens = torch.arange(prefix + n, dtype=torch.float32)[None, :, None].expand(pixel_values.shape[0], -1, 32)
        return SimpleNamespace(last_hidden_state=tokens)

    monkeypatch.setattr(ext.model, "forward", fake)
    fm = ext.extract(image)
    np.testing.assert_array_equal(fm.features[0, 0], prefix + np.arange(n).reshape(5, 8))


def test_mae_keeps_every_patch_in_order(image, monkeypatch):
    ext = load_feature_extractor("tiny-mae")
    a, b = ext.extract(image).features, ext.extract(image).features
    np.testing.assert_array_equal(a, b)  # no random masking
    n = 40
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))

    def fake(pixel_values, noise=None, interpolate_pos_encoding=False):
        shuffled = torch.cat([torch.full((1,), -1.0), perm.float()])  # CLS, then patches in shuffled order
        return SimpleNamespace(last_hidden_state=shuffled[None, :, None].expand(1, -1, 32),
                               ids_restore=torch.argsort(perm)[None])

    monkeypatch.setattr(ext.model, "forward", fake)
    np.testing.assert_array_equal(ext.extract(image).features[0, 0], np.arange(n).reshape(5, 8))


@pytest.mark.parametrize("name", ["tiny-dinov2", "tiny-sam-encoder"])
def test_cell_centres_are_the_patch_centres_mapped_back_to_pixels(name, image):
    ext = load_feature_extractor(name)
    fm = ext.extract(image)
    geom = ext.geometry((H, W))
    cy, cx = fm.cell_centers()
    h, w = fm.features.shape[2:]
    assert (len(cy), len(cx)) == (h, w)
    n = max(h, w)
    centre = (np.arange(n) + 0.5) * ext.patch_size - 0.5  # patch centres in the model frame
    back = geom.points_from_model(np.stack([centre, centre], axis=-1))  # (x, y) in -> (y, x) out
    np.testing.assert_allclose(cy, back[:h, 0], atol=1e-9)
    np.testing.assert_allclose(cx, back[:w, 1], atol=1e-9)


def test_sam_encoder_crops_the_padding(image):
    ext = load_feature_extractor("tiny-sam-encoder")
    geom = ext.geometry((H, W))
    assert geom.frame == (64, 64) and geom.resized == (40, 64)
    assert ext.extract(image).features.shape == (1, 16, 5, 8)
    with pytest.raises(InputError, match="fixed position embeddings"):
        load_feature_extractor("tiny-sam-encoder", input_size=128)


def test_input_size_and_batch_size_options(image):
    ext = load_feature_extractor("tiny-dinov2", input_size=128, batch_size=1)
    assert ext.input_size == 128 and ext.batch_size == 1
    assert ext.extract(image).features.shape == (1, 32, 10, 16)
    with pytest.raises(InputError, match="batch size"):
        load_feature_extractor("tiny-dinov2", batch_size=0)
    with pytest.raises(InputError, match="non-empty"):
        ext.extract(np.zeros((0, 8, 8)))
