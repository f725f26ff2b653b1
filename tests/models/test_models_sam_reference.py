"""Our SAM backend against Meta's own code: segment-anything's `Sam` modules and `SamPredictor`.

A tiny random-weight SAM is built from segment-anything's modules (the architecture of `tiny-sam`), its
`state_dict()` is saved as an original `.pth` checkpoint and loaded through `load_segmenter("tiny-sam",
weights=...)`. On non-square slices that must be resized (down and up), the image embedding, the low-res
logits, the IoU scores, the upsampled logits and the masks must equal what `SamPredictor` gives for the same
8-bit image (the one our intensity clip makes) and the same prompts, to float precision.

segment-anything imports torchvision, which is not installed beside our torch: the few torchvision functions
it needs are stubbed in `sys.modules` only while it is imported (its modules keep references to the stubs),
and everything is removed from `sys.modules` afterwards.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  imported before the stubs: transformers probes for torchvision by its import spec
from PIL import Image

from cryoseg.models import load_segmenter
from cryoseg.models.preprocess import logits_to_image, normalize_intensity, to_uint8
from cryoseg.models.sam_checkpoint import map_original_key

ATOL = 1e-4  # float32 through two different implementations of the same network
SHAPES = [(40, 90), (50, 37)]  # non-square: 90 -> 64 shrinks (PIL antialiasing), 50 -> 64 enlarges


def _torchvision_stubs() -> dict[str, types.ModuleType]:
    """The torchvision names segment-anything imports; `resize` and `to_pil_image` behave as torchvision's do
    on the inputs `SamPredictor.set_image` gives them (a uint8 HWC array, then a PIL image with size (h, w))."""

    def unavailable(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision stub: not needed by SamPredictor")

    def to_pil_image(pic: np.ndarray) -> Image.Image:
        arr = np.asarray(pic)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, "stub handles uint8 RGB HWC only"
        return Image.fromarray(arr, mode="RGB")

    def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
        assert isinstance(img, Image.Image) and len(size) == 2, "stub handles a PIL image and (h, w) only"
        return img.resize((int(size[1]), int(size[0])), Image.BILINEAR)  # torchvision's PIL path, antialiased

    modules = {name: types.ModuleType(name) for name in (
        "torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
        "torchvision.transforms.functional")}
    modules["torchvision.ops.boxes"].batched_nms = unavailable
    modules["torchvision.ops.boxes"].box_area = unavailable
    modules["torchvision.transforms.functional"].resize = resize
    modules["torchvision.transforms.functional"].to_pil_image = to_pil_image
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    return modules


@pytest.fixture(scope="module")
def ref() -> Iterator[SimpleNamespace]:
    """segment-anything's Sam, its parts, SamPredictor and ResizeLongestSide."""
    assert "torchvision" not in sys.modules
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _torchvision_stubs().items():
            mp.setitem(sys.modules, name, module)
        from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
        from segment_anything.predictor import SamPredictor
        from segment_anything.utils.transforms import ResizeLongestSide
    ns = SimpleNamespace(Sam=Sam, ImageEncoderViT=ImageEncoderViT, PromptEncoder=PromptEncoder,
                         MaskDecoder=MaskDecoder, TwoWayTransformer=TwoWayTransformer, SamPredictor=SamPredictor,
                         ResizeLongestSide=ResizeLongestSide)
    yield ns
    for name in set(sys.modules) - before:
        if name == "segment_anything" or name.startswith("segment_anything."):
            del sys.modules[name]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _original_sam(ref: SimpleNamespace, seed: int = 0) -> torch.nn.Module:
    """segment-anything's `_build_sam` with tiny numbers (those of cryoseg's tiny-sam), random weights.

    Every parameter gets seeded noise on top of segment-anything's init, which leaves the positional
    embeddings and relative position tables at zero and the norms at one: swapped tensors must show."""
    img_size, patch, dim = 64, 8, 16
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        sam = ref.Sam(
            image_encoder=ref.ImageEncoderViT(
                img_size=img_size, patch_size=patch, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4,
                out_chans=dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True, global_attn_indexes=(1,), window_size=4),
            prompt_encoder=ref.PromptEncoder(
                embed_dim=dim, image_embedding_size=(img_size // patch, img_size // patch),
                input_image_size=(img_size, img_size), mask_in_chans=8),
            mask_decoder=ref.MaskDecoder(
                num_multimask_outputs=3,
                transformer=ref.TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=32, num_heads=2),
                transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=16),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
        with torch.no_grad():
            for p in sam.parameters():
                p.add_(0.2 * torch.randn_like(p))
    return sam.eval()


@pytest.fixture(scope="module")
def pair(ref, tmp_path_factory) -> tuple[torch.nn.Module, object]:
    """(the original Sam, our segmenter loaded from its state dict saved as a .pth)."""
    sam = _original_sam(ref, seed=1)  # a seed whose masks are partial (neither empty nor full) in every case
    root = Path(tmp_path_factory.mktemp("sam-reference"))
    path = root / "sam_tiny_original.pth"
    torch.save(sam.state_dict(), path)
    with pytest.MonkeyPatch.context() as mp:  # nothing of the user's caches is looked at
        mp.setenv("CRYOSEG_HOME", str(root / "home"))
        mp.setenv("HF_HUB_CACHE", str(root / "hub"))
        seg = load_segmenter("tiny-sam", weights=path, device="cpu")
    return sam, seg


def _slice(shape: tuple[int, int]) -> np.ndarray:
    """A float tomogram-like slice: noise (so that any resize difference shows), a bright blob, a hot pixel."""
    rng = np.random.default_rng(3)
    H, W = shape
    img = rng.normal(-2.0, 1.0, size=shape).astype(np.float32)
    yy, xx = np.mgrid[:H, :W]
    img += 4.0 * np.exp(-((yy - 0.4 * H) ** 2 + (xx - 0.6 * W) ** 2) / (0.05 * H * W))
    img[1, 2] = 1e4
    return img


def _reference_predictor(ref: SimpleNamespace, sam: torch.nn.Module, img: np.ndarray) -> object:
    """SamPredictor on the 8-bit RGB image our pipeline makes from `img` (default percentiles)."""
    u8 = to_uint8(normalize_intensity(img))
    predictor = ref.SamPredictor(sam)
    predictor.set_image(np.repeat(u8[..., None], 3, axis=-1), image_format="RGB")
    return predictor


def test_tiny_sam_config_has_the_reference_norm_epsilons(pair):
    """Equal weights are not enough: every norm must use the original's eps (segment-anything's two-way
    transformer keeps nn.LayerNorm's 1e-5 where transformers defaults to 1e-6)."""
    sam, seg = pair
    checked = 0
    for name, module in sam.named_modules():
        if hasattr(module, "eps") and hasattr(module, "weight"):
            (target,) = map_original_key(f"{name}.weight")
            ours = seg.model.get_submodule(target.removesuffix(".weight"))
            assert ours.eps == module.eps, f"{name} (eps {module.eps}) -> {target} (eps {ours.eps})"
            checked += 1
    assert checked == 2 * 2 + 2 + 2 + 4 * 2 + 1 + 1  # encoder blocks, neck, mask downscaling, decoder, final, upscale


@pytest.mark.parametrize("shape", SHAPES)
def test_image_embedding_equals_sam_predictor(ref, pair, shape):
    sam, seg = pair
    img = _slice(shape)
    predictor = _reference_predictor(ref, sam, img)
    geom = seg.geometry(shape)
    assert ref.ResizeLongestSide.get_preprocess_shape(*shape, 64) == geom.resized != shape
    assert predictor.input_size == geom.resized and predictor.original_size == shape
    ours = seg.embed(img).data["image_embeddings"]
    assert ours.shape == predictor.features.shape == (1, 16, 8, 8)
    torch.testing.assert_close(ours, predictor.features, atol=ATOL, rtol=0)


# (y, x) points with labels, an optional (y0, x0, y1, x1) box, multimask
PROMPTS = {
    "positive+negative points, multimask": (np.array([[0.4, 0.6], [0.85, 0.1]]), np.array([1, 0]), None, True),
    "point and box": (np.array([[0.45, 0.55]]), np.array([1]), np.array([0.1, 0.3, 0.8, 0.95]), False),
    "box only": (np.zeros((0, 2)), np.zeros(0, int), np.array([0.2, 0.05, 0.9, 0.5]), False),
    "three points incl. the last pixel": (np.array([[0.2, 0.2], [0.6, 0.7], [1.0, 1.0]]), np.array([1, 1, 0]), None,
                                          True),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("case", list(PROMPTS))
def test_prediction_equals_sam_predictor(ref, pair, shape, case):
    """Same 8-bit image, same prompts in slice pixels: same low-res logits, IoU scores, upsampled logits
    and masks. cryoseg takes (y, x); SamPredictor takes (x, y) and boxes as (x0, y0, x1, y1)."""
    sam, seg = pair
    H, W = shape
    img = _slice(shape)
    predictor = _reference_predictor(ref, sam, img)
    emb = seg.embed(img)
    frac, labels, box_frac, multimask = PROMPTS[case]
    size = np.array([H - 1, W - 1], dtype=np.float64)
    points = np.round(frac * size, 1)  # sub-pixel coordinates on purpose
    box = None if box_frac is None else np.round(box_frac * np.tile(size, 2), 1)
    ours = seg.predict(emb, points[None], labels[None], boxes=None if box is None else box[None],
                       multimask=multimask)
    theirs = predictor.predict(point_coords=points[:, ::-1].copy() if len(points) else None,
                               point_labels=labels if len(points) else None,
                               box=None if box is None else box[[1, 0, 3, 2]],
                               multimask_output=multimask, return_logits=True)
    mixed = _assert_same(seg, shape, ours, theirs)
    # feeding the best mask back as a prior (the next slice's prompt in 3D propagation)
    best = int(np.argmax(theirs[1]))
    prior = ours.logits[0, best][None]
    ours = seg.predict(emb, points[None], labels[None], boxes=None if box is None else box[None],
                       mask_logits=prior, multimask=False)
    theirs = predictor.predict(point_coords=points[:, ::-1].copy() if len(points) else None,
                               point_labels=labels if len(points) else None,
                               box=None if box is None else box[[1, 0, 3, 2]], mask_input=prior,
                               multimask_output=False, return_logits=True)
    mixed += _assert_same(seg, shape, ours, theirs)
    assert mixed > 0, "only empty or full masks: the thresholded upsampling went untested"


def _assert_same(seg, shape: tuple[int, int], ours, theirs) -> int:
    """Assert our MaskPrediction for one prompt equals SamPredictor's (masks, iou, low-res) with return_logits;
    return how many of the masks are neither empty nor full."""
    logits_full, iou, low = (torch.as_tensor(np.asarray(a)) for a in theirs)
    M = low.shape[0]
    assert ours.logits.shape == (1, M, *seg.low_res) and ours.masks.shape == (1, M, *shape)
    torch.testing.assert_close(torch.from_numpy(ours.logits[0]), low, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.from_numpy(ours.iou_scores[0]), iou, atol=ATOL, rtol=0)
    # the upsampling our masks come from (and 3D propagation reads): SAM's to-frame, crop, to-slice
    full = logits_to_image(torch.from_numpy(ours.logits[0]), seg.geometry(shape))
    torch.testing.assert_close(full, logits_full, atol=ATOL, rtol=0)
    # thresholded at 0 like SamPredictor; only pixels within float noise of 0 may disagree
    decided = (logits_full.abs() > ATOL).numpy()
    np.testing.assert_array_equal(ours.masks[0][decided], (logits_full > 0).numpy()[decided])
    area = ours.masks[0].sum(axis=(1, 2))
    return int(np.count_nonzero((area > 0) & (area < shape[0] * shape[1])))
