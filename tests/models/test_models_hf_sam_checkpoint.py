"""Meta's original segment-anything checkpoint -> transformers SamModel, strictly.

The expected original key names and shapes are written out here from segment-anything's modeling code
(image_encoder.py, prompt_encoder.py, mask_decoder.py, transformer.py, build_sam.py), independently of the
mapping under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryoseg.errors import CorruptFileError, InputError
from cryoseg.models import load_feature_extractor, load_segmenter
from cryoseg.models.sam_checkpoint import convert_original_state_dict
from cryoseg.models.tiny import build_from_config, full_size_config


def original_sam_shapes(
    embed_dim: int, depth: int, heads: int, global_attn: list[int], img_size: int = 1024, patch: int = 16,
    window: int = 14, out_chans: int = 256, mask_in_chans: int = 16, decoder_depth: int = 2, decoder_mlp: int = 2048,
    iou_hidden: int = 256, downsample: int = 2,
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an original SAM state dict, following segment-anything's module definitions."""
    s: dict[str, tuple[int, ...]] = {}
    grid = img_size // patch
    head_dim = embed_dim // heads
    mlp = 4 * embed_dim
    # ImageEncoderViT
    s["image_encoder.pos_embed"] = (1, grid, grid, embed_dim)
    s["image_encoder.patch_embed.proj.weight"] = (embed_dim, 3, patch, patch)
    s["image_encoder.patch_embed.proj.bias"] = (embed_dim,)
    for i in range(depth):
        b = f"image_encoder.blocks.{i}."
        size = grid if i in global_attn else window
        for norm in ("norm1", "norm2"):
            s[b + norm + ".weight"] = s[b + norm + ".bias"] = (embed_dim,)
        s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"] = (3 * embed_dim, embed_dim), (3 * embed_dim,)
        s[b + "attn.proj.weight"], s[b + "attn.proj.bias"] = (embed_dim, embed_dim), (embed_dim,)
        s[b + "attn.rel_pos_h"] = s[b + "attn.rel_pos_w"] = (2 * size - 1, head_dim)
        s[b + "mlp.lin1.weight"], s[b + "mlp.lin1.bias"] = (mlp, embed_dim), (mlp,)
        s[b + "mlp.lin2.weight"], s[b + "mlp.lin2.bias"] = (embed_dim, mlp), (embed_dim,)
    s["image_encoder.neck.0.weight"] = (out_chans, embed_dim, 1, 1)
    s["image_encoder.neck.1.weight"] = s["image_encoder.neck.1.bias"] = (out_chans,)
    s["image_encoder.neck.2.weight"] = (out_chans, out_chans, 3, 3)
    s["image_encoder.neck.3.weight"] = s["image_encoder.neck.3.bias"] = (out_chans,)
    # PromptEncoder
    s["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = (2, out_chans // 2)
    for i in range(4):
        s[f"prompt_encoder.point_embeddings.{i}.weight"] = (1, out_chans)
    s["prompt_encoder.not_a_point_embed.weight"] = (1, out_chans)
    s["prompt_encoder.no_mask_embed.weight"] = (1, out_chans)
    q = mask_in_chans // 4
    md = "prompt_encoder.mask_downscaling."
    s[md + "0.weight"], s[md + "0.bias"] = (q, 1, 2, 2), (q,)
    s[md + "1.weight"] = s[md + "1.bias"] = (q,)
    s[md + "3.weight"], s[md + "3.bias"] = (mask_in_chans, q, 2, 2), (mask_in_chans,)
    s[md + "4.weight"] = s[md + "4.bias"] = (mask_in_chans,)
    s[md + "6.weight"], s[md + "6.bias"] = (out_chans, mask_in_chans, 1, 1), (out_chans,)
    # MaskDecoder with TwoWayTransformer
    c, inner = out_chans, out_chans // downsample

    def attention(prefix: str, internal: int) -> None:
        for p in ("q_proj", "k_proj", "v_proj"):
            s[f"{prefix}.{p}.weight"], s[f"{prefix}.{p}.bias"] = (internal, c), (internal,)
        s[f"{prefix}.out_proj.weight"], s[f"{prefix}.out_proj.bias"] = (c, internal), (c,)

    for i in range(decoder_depth):
        b = f"mask_decoder.transformer.layers.{i}."
        attention(b + "self_attn", c)
        attention(b + "cross_attn_token_to_image", inner)
        attention(b + "cross_attn_image_to_token", inner)
        for n in range(1, 5):
            s[f"{b}norm{n}.weight"] = s[f"{b}norm{n}.bias"] = (c,)
        s[b + "mlp.lin1.weight"], s[b + "mlp.lin1.bias"] = (decoder_mlp, c), (decoder_mlp,)
        s[b + "mlp.lin2.weight"], s[b + "mlp.lin2.bias"] = (c, decoder_mlp), (c,)
    attention("mask_decoder.transformer.final_attn_token_to_image", inner)
    s["mask_decoder.transformer.norm_final_attn.weight"] = s["mask_decoder.transformer.norm_final_attn.bias"] = (c,)
    s["mask_decoder.iou_token.weight"] = (1, c)
    s["mask_decoder.mask_tokens.weight"] = (4, c)
    up = "mask_decoder.output_upscaling."
    s[up + "0.weight"], s[up + "0.bias"] = (c, c // 4, 2, 2), (c // 4,)
    s[up + "1.weight"] = s[up + "1.bias"] = (c // 4,)
    s[up + "3.weight"], s[up + "3.bias"] = (c // 4, c // 8, 2, 2), (c // 8,)
    for i in range(4):
        dims = [(c, c), (c, c), (c // 8, c)]
        for k, (o, n_in) in enumerate(dims):
            s[f"mask_decoder.output_hypernetworks_mlps.{i}.layers.{k}.weight"] = (o, n_in)
            s[f"mask_decoder.output_hypernetworks_mlps.{i}.layers.{k}.bias"] = (o,)
    for k, (o, n_in) in enumerate([(iou_hidden, c), (iou_hidden, iou_hidden), (4, iou_hidden)]):
        s[f"mask_decoder.iou_prediction_head.layers.{k}.weight"] = (o, n_in)
        s[f"mask_decoder.iou_prediction_head.layers.{k}.bias"] = (o,)
    return s


# the tiny config of cryoseg.models.tiny (tiny-sam), in segment-anything's terms
TINY = dict(embed_dim=32, depth=2, heads=2, global_attn=[1], img_size=64, patch=8, window=4, out_chans=16,
            mask_in_chans=8, decoder_mlp=32, iou_hidden=16)


HYPER = "mask_decoder.output_hypernetworks_mlps.2."


def _random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) for k, shape in shapes.items()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def home(isolated_home: Path) -> Path:
    """The test's folder, holding its own empty cryoseg home and hub cache."""
    return isolated_home


@pytest.fixture()
def tiny_pth(home) -> tuple[Path, dict[str, torch.Tensor]]:
    state = _random_state(original_sam_shapes(**TINY))
    path = home / "sam_tiny_original.pth"
    torch.save(state, path)
    return path, state


def test_tiny_original_checkpoint_loads_strictly_and_lands_in_the_right_parameters(tiny_pth):
    path, state = tiny_pth
    seg = load_segmenter("tiny-sam", weights=path, device="cpu")
    params = seg.model.state_dict()
    expected_pairs = {
        "image_encoder.patch_embed.proj.weight": "vision_encoder.patch_embed.projection.weight",
        "image_encoder.pos_embed": "vision_encoder.pos_embed",
        "image_encoder.blocks.1.norm2.bias": "vision_encoder.layers.1.layer_norm2.bias",
        "image_encoder.blocks.0.attn.qkv.weight": "vision_encoder.layers.0.attn.qkv.weight",
        "image_encoder.blocks.1.attn.rel_pos_w": "vision_encoder.layers.1.attn.rel_pos_w",
        "image_encoder.blocks.0.mlp.lin2.weight": "vision_encoder.layers.0.mlp.lin2.weight",
        "image_encoder.neck.0.weight": "vision_encoder.neck.conv1.weight",
        "image_encoder.neck.1.bias": "vision_encoder.neck.layer_norm1.bias",
        "image_encoder.neck.2.weight": "vision_encoder.neck.conv2.weight",
        "image_encoder.neck.3.weight": "vision_encoder.neck.layer_norm2.weight",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": "shared_image_embedding.positional_embedding",
        "prompt_encoder.point_embeddings.3.weight": "prompt_encoder.point_embed.3.weight",
        "prompt_encoder.not_a_point_embed.weight": "prompt_encoder.not_a_point_embed.weight",
        "prompt_encoder.no_mask_embed.weight": "prompt_encoder.no_mask_embed.weight",
        "prompt_encoder.mask_downscaling.0.weight": "prompt_encoder.mask_embed.conv1.weight",
        "prompt_encoder.mask_downscaling.1.bias": "prompt_encoder.mask_embed.layer_norm1.bias",
        "prompt_encoder.mask_downscaling.3.weight": "prompt_encoder.mask_embed.conv2.weight",
        "prompt_encoder.mask_downscaling.4.bias": "prompt_encoder.mask_embed.layer_norm2.bias",
        "prompt_encoder.mask_downscaling.6.weight": "prompt_encoder.mask_embed.conv3.weight",
        "mask_decoder.transformer.layers.1.norm3.weight": "mask_decoder.transformer.layers.1.layer_norm3.weight",
        "mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.weight":
            "mask_decoder.transformer.layers.0.cross_attn_image_to_token.out_proj.weight",
        "mask_decoder.transformer.layers.1.mlp.lin1.bias": "mask_decoder.transformer.layers.1.mlp.lin1.bias",
        "mask_decoder.transformer.final_attn_token_to_image.k_proj.weight":
            "mask_decoder.transformer.final_attn_token_to_image.k_proj.weight",
        "mask_decoder.transformer.norm_final_attn.bias": "mask_decoder.transformer.layer_norm_final_attn.bias",
        "mask_decoder.mask_tokens.weight": "mask_decoder.mask_tokens.weight",
        "mask_decoder.output_upscaling.0.weight": "mask_decoder.upscale_conv1.weight",
        "mask_decoder.output_upscaling.1.weight": "mask_decoder.upscale_layer_norm.weight",
        "mask_decoder.output_upscaling.3.bias": "mask_decoder.upscale_conv2.bias",
        HYPER + "layers.0.weight": HYPER + "proj_in.weight",
        HYPER + "layers.1.weight": HYPER + "layers.0.weight",
        HYPER + "layers.2.bias": HYPER + "proj_out.bias",
        "mask_decoder.iou_prediction_head.layers.2.weight": "mask_decoder.iou_prediction_head.proj_out.weight",
        # tensors of equal shape that a mix-up would swap without any shape error
        "image_encoder.blocks.0.norm1.weight": "vision_encoder.layers.0.layer_norm1.weight",
        "image_encoder.blocks.0.attn.rel_pos_h": "vision_encoder.layers.0.attn.rel_pos_h",
        "prompt_encoder.point_embeddings.0.weight": "prompt_encoder.point_embed.0.weight",
        "prompt_encoder.point_embeddings.1.weight": "prompt_encoder.point_embed.1.weight",
        "mask_decoder.iou_token.weight": "mask_decoder.iou_token.weight",
        "mask_decoder.transformer.layers.0.norm1.weight": "mask_decoder.transformer.layers.0.layer_norm1.weight",
        "mask_decoder.transformer.layers.0.norm2.bias": "mask_decoder.transformer.layers.0.layer_norm2.bias",
        "mask_decoder.transformer.layers.0.norm4.weight": "mask_decoder.transformer.layers.0.layer_norm4.weight",
        "mask_decoder.transformer.layers.0.self_attn.q_proj.weight":
            "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
        "mask_decoder.transformer.layers.0.self_attn.v_proj.weight":
            "mask_decoder.transformer.layers.0.self_attn.v_proj.weight",
        "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.bias":
            "mask_decoder.transformer.layers.1.cross_attn_token_to_image.k_proj.bias",
        "mask_decoder.output_hypernetworks_mlps.0.layers.1.bias": "mask_decoder.output_hypernetworks_mlps.0.layers.0.bias",
        "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight":
            "mask_decoder.output_hypernetworks_mlps.3.proj_out.weight",
        "mask_decoder.iou_prediction_head.layers.0.weight": "mask_decoder.iou_prediction_head.proj_in.weight",
        "mask_decoder.iou_prediction_head.layers.1.weight": "mask_decoder.iou_prediction_head.layers.0.weight",
    }
    for original, hf in expected_pairs.items():
        torch.testing.assert_close(params[hf], state[original], msg=f"{original} did not land in {hf}")
    # the Fourier matrix feeds both the image-wide and the prompt positional encodings
    torch.testing.assert_close(params["prompt_encoder.shared_embedding.positional_embedding"],
                               state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"])
    # every original tensor went somewhere: each model tensor equals exactly one original tensor
    originals = [v for v in state.values()]
    for key, value in params.items():
        assert any(value.shape == o.shape and torch.equal(value, o) for o in originals), f"{key} not filled"
    # and the model runs
    pred = seg.predict(seg.embed(np.random.default_rng(0).random((40, 64))), np.array([[[10.0, 20.0]]]),
                       np.array([[1]]))
    assert pred.masks.shape == (1, 1, 40, 64) and np.isfinite(pred.logits).all()
    assert seg.signature()["weights"].startswith("sha256:")


def test_perturbing_one_original_value_changes_only_its_target(home):
    shapes = original_sam_shapes(**TINY)
    state = _random_state(shapes)
    path_a, path_b = home / "a.pth", home / "b.pth"
    torch.save(state, path_a)
    state_b = dict(state)
    key = "mask_decoder.iou_prediction_head.layers.1.bias"
    state_b[key] = state[key] + 1
    torch.save(state_b, path_b)
    a = load_segmenter("tiny-sam", weights=path_a).model.state_dict()
    b = load_segmenter("tiny-sam", weights=path_b).model.state_dict()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert changed == ["mask_decoder.iou_prediction_head.layers.0.bias"]


def test_sam_encoder_reads_the_original_checkpoint(tiny_pth):
    path, state = tiny_pth
    ext = load_feature_extractor("tiny-sam-encoder", weights=path)
    torch.testing.assert_close(ext.model.state_dict()["neck.conv2.weight"], state["image_encoder.neck.2.weight"])
    fm = ext.extract(np.random.default_rng(0).random((2, 30, 60)))
    assert fm.features.shape == (2, 16, 4, 8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("mask_decoder.transformer.layers.1.norm4.bias"), "missing key.*layers.1.layer_norm4.bias"),
        (lambda s: s.__setitem__("image_encoder.extra_head.weight", torch.zeros(3)), "unexpected key.*extra_head"),
        (lambda s: s.__setitem__("image_encoder.neck.0.weight", torch.zeros(16, 32, 3, 3)),
         "shape mismatch.*neck.conv1"),
    ],
)
def test_mismatching_checkpoint_is_refused_with_the_keys(home, change, message):
    state = _random_state(original_sam_shapes(**TINY))
    change(state)
    path = home / "bad.pth"
    torch.save(state, path)
    before = sorted(p.name for p in home.rglob("*"))
    with pytest.raises(InputError, match=message) as info:
        load_segmenter("tiny-sam", weights=path)
    assert "bad.pth" in str(info.value) and "tiny-sam" in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in home.rglob("*")) == before  # nothing written


def test_corrupt_checkpoint_file(home):
    path = home / "sam_vit_b_01ec64.pth"
    path.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(CorruptFileError, match="sam_vit_b_01ec64.pth.*not a readable PyTorch"):
        load_segmenter("tiny-sam", weights=path)
    torch.save([1, 2, 3], home / "list.pth")
    with pytest.raises(CorruptFileError, match="state dict"):
        load_segmenter("tiny-sam", weights=home / "list.pth")


def test_original_checkpoint_for_other_families_is_refused(tiny_pth):
    path, _ = tiny_pth
    with pytest.raises(InputError, match="SAM ViT-B/L/H only"):
        load_segmenter("tiny-sam2", weights=path)


@pytest.mark.parametrize(("name", "dims"), [
    ("sam-vit-b", dict(embed_dim=768, depth=12, heads=12, global_attn=[2, 5, 8, 11])),
    ("sam-vit-h", dict(embed_dim=1280, depth=32, heads=16, global_attn=[7, 15, 23, 31])),
])
def test_mapping_covers_the_real_architectures(name, dims):
    """Key names and shapes of the real ViT-B / ViT-H checkpoints map 1:1 onto the transformers model
    (checked on the meta device: no memory, no weights)."""
    with torch.device("meta"):
        model = build_from_config("SamModel", full_size_config(name))
        state = {k: torch.empty(shape) for k, shape in original_sam_shapes(**dims).items()}
    converted, unmapped = convert_original_state_dict(state)
    expected = model.state_dict()
    assert unmapped == []
    assert set(converted) == set(expected)
    assert all(tuple(converted[k].shape) == tuple(v.shape) for k, v in expected.items())
