"""Model configs built in code, so that nothing is downloaded to build a model:

- tiny random-weight configs of every family (hidden sizes 8-32, 1-2 layers, 64-pixel inputs), for tests
  and for dry runs of every pipeline on a fresh machine;
- the real-size architectures of SAM ViT-B/L/H (needed to load Meta's original checkpoints, which carry
  weights but no config) and DINOv2 ViT-S/B/L/G (benchmarks with random weights).

Weights of a tiny model come from a fixed seed, so the same name always gives the same model. The diffusers
architectures (tiny-sd and the real-size Stable Diffusion v1.4) live beside this module, in `diffusion_configs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UnknownModelError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PretrainedConfig

TINY_SEED = 0

_SAM_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=16, image_size=64,
                   patch_size=8, window_size=4, global_attn_indexes=[1], mlp_dim=128, num_pos_feats=8)
_SAM_PROMPT = dict(hidden_size=16, image_size=64, image_embedding_size=8, mask_input_channels=8)
_SAM_DECODER = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16)
_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, patch_size=8, image_size=64)
# segment-anything's two-way transformer keeps nn.LayerNorm's default eps; transformers' SAM defaults to 1e-6.
# The SAM configs that read Meta's checkpoints (tiny-sam, sam-vit-*) use the original's.
_SAM_ORIGINAL_DECODER = dict(layer_norm_eps=1e-5)


def _tiny_sam() -> PretrainedConfig:
    from transformers import SamConfig

    return SamConfig(vision_config=dict(_SAM_VISION), prompt_encoder_config=dict(_SAM_PROMPT),
                     mask_decoder_config=dict(_SAM_DECODER, **_SAM_ORIGINAL_DECODER))


def _tiny_sam_hq() -> PretrainedConfig:
    from transformers import SamHQConfig

    return SamHQConfig(vision_config=dict(_SAM_VISION), prompt_encoder_config=dict(_SAM_PROMPT),
                       mask_decoder_config=dict(_SAM_DECODER, vit_dim=_SAM_VISION["hidden_size"]))


def _tiny_sam2() -> PretrainedConfig:
    from transformers import Sam2Config

    backbone = dict(model_type="sam2_hiera_det_model", hidden_size=8, num_attention_heads=1, image_size=[64, 64],
                    blocks_per_stage=[1, 1, 2, 1], embed_dim_per_stage=[8, 16, 32, 64],
                    num_attention_heads_per_stage=[1, 1, 2, 2], window_size_per_stage=[4, 4, 2, 2],
                    global_attention_blocks=[3], window_positional_embedding_background_size=[2, 2])
    vision = dict(model_type="sam2_vision_model", backbone_config=backbone, backbone_channel_list=[64, 32, 16, 8],
                  backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]], fpn_hidden_size=16)
    return Sam2Config(vision_config=vision,
                      prompt_encoder_config=dict(hidden_size=16, image_size=64, patch_size=16, mask_input_channels=8),
                      mask_decoder_config=dict(_SAM_DECODER))


def _tiny_dinov2() -> PretrainedConfig:
    from transformers import Dinov2Config

    return Dinov2Config(**_VIT)


def _tiny_dinov2_reg() -> PretrainedConfig:
    from transformers import Dinov2WithRegistersConfig

    return Dinov2WithRegistersConfig(**_VIT, num_register_tokens=4)


def _tiny_dinov3() -> PretrainedConfig:
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(**_VIT, intermediate_size=64, num_register_tokens=4)


def _tiny_mae() -> PretrainedConfig:
    from transformers import ViTMAEConfig

    return ViTMAEConfig(**_VIT, intermediate_size=64, mask_ratio=0.0, decoder_hidden_size=16,
                        decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=32)


# name -> (transformers class name, config builder)
TINY_CONFIGS: dict[str, tuple[str, Any]] = {
    "tiny-sam": ("SamModel", _tiny_sam),
    "tiny-sam-hq": ("SamHQModel", _tiny_sam_hq),
    "tiny-sam2": ("Sam2Model", _tiny_sam2),
    "tiny-sam-encoder": ("SamModel", _tiny_sam),
    "tiny-dinov2": ("Dinov2Model", _tiny_dinov2),
    "tiny-dinov2-reg": ("Dinov2WithRegistersModel", _tiny_dinov2_reg),
    "tiny-dinov3": ("DINOv3ViTModel", _tiny_dinov3),
    "tiny-mae": ("ViTMAEModel", _tiny_mae),
}


# Real-size architectures (no weights). SAM: segment-anything build_sam.py; DINOv2: the paper's ViT table.
_SAM_SIZES = {
    "sam-vit-b": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, global_attn_indexes=[2, 5, 8, 11]),
    "sam-vit-l": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                      global_attn_indexes=[5, 11, 17, 23]),
    "sam-vit-h": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                      global_attn_indexes=[7, 15, 23, 31]),
}
_DINOV2_SIZES = {
    "dinov2-vits14": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "dinov2-vitb14": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "dinov2-vitl14": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
    "dinov2-vitg14": dict(hidden_size=1536, num_hidden_layers=40, num_attention_heads=24, use_swiglu_ffn=True),
}


def full_size_config(name: str) -> PretrainedConfig:
    """The real-size architecture config of `name` (SAM ViT-B/L/H or DINOv2 ViT-S/B/L/G), built in code."""
    key = name.removesuffix("-encoder")
    if key in _SAM_SIZES:
        from transformers import SamConfig

        return SamConfig(vision_config=dict(_SAM_SIZES[key], image_size=1024, patch_size=16, window_size=14,
                                            output_channels=256, mlp_dim=4 * _SAM_SIZES[key]["hidden_size"]),
                         mask_decoder_config=dict(_SAM_ORIGINAL_DECODER))
    if key in _DINOV2_SIZES:
        from transformers import Dinov2Config

        return Dinov2Config(**_DINOV2_SIZES[key], patch_size=14, image_size=518)
    raise UnknownModelError(f"no built-in full-size config for {name!r}; known: "
                            f"{', '.join([*_SAM_SIZES, *_DINOV2_SIZES])}")


def has_full_size_config(name: str) -> bool:
    """Whether `full_size_config(name)` exists."""
    key = name.removesuffix("-encoder")
    return key in _SAM_SIZES or key in _DINOV2_SIZES


def tiny_config(name: str) -> PretrainedConfig:
    """The tiny config of `name` (one of `TINY_CONFIGS`)."""
    if name not in TINY_CONFIGS:
        raise UnknownModelError(f"unknown tiny model {name!r}; known: {', '.join(TINY_CONFIGS)}")
    return TINY_CONFIGS[name][1]()


def build_from_config(
    hf_class: str, config: PretrainedConfig, seed: int = TINY_SEED, lively: bool = False
) -> torch.nn.Module:
    """Instantiate `transformers.<hf_class>(config)` with weights drawn from `seed`, leaving the global RNG as
    it was. `lively` redraws weight matrices with unit gain (see `_liven`); used for the tiny models."""
    import torch
    import transformers

    cls = getattr(transformers, hf_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    if lively:
        _liven(model, seed)
    return model.eval()


def build_tiny_model(name: str, seed: int = TINY_SEED) -> torch.nn.Module:
    """A tiny random-weight transformers model of family `name` (eval mode, float32, on the CPU)."""
    return build_from_config(TINY_CONFIGS[name][0], tiny_config(name), seed, lively=True)


def _liven(model: torch.nn.Module, seed: int) -> None:
    """Redraw every weight matrix / kernel with std 1/sqrt(fan_in).

    transformers' pretraining inits (std 0.02, zero position biases) make a 2-layer random model nearly
    blind to its prompts; unit-gain weights let tiny models respond visibly to points, boxes and mask
    priors, which is what tests and dry runs need to see."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                fan_in = max(1, param[0].numel())
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)
