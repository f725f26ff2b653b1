"""Latent-diffusion architectures built in code (the diffusers sibling of `tiny.py`, which holds transformers
configs only), so that nothing is downloaded to build a model:

- `tiny-sd`: a tiny random-weight Stable Diffusion (UNet2DConditionModel, AutoencoderKL, CLIPTextModel) with
  the same block types as SD v1.x, for tests and dry runs. Its VAE downsamples by 8 like SD's, and its UNet has
  cross-attention blocks on two levels of the decoder, so the attention-affinity code sees maps of two
  resolutions (8 x 8 and 4 x 4 for a 64-pixel tile);
- the real-size SD v1.4 architecture, for benchmarks with random weights (`build_random_diffusion(full_size=True)`).

Weights come from a fixed seed (`tiny.TINY_SEED`) with the libraries' own initialisation, so the same call always
gives the same model. torch, diffusers and transformers are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tiny import TINY_SEED

if TYPE_CHECKING:  # pragma: no cover
    import torch

# SD v1.x's noise schedule (its scheduler/scheduler_config.json); used when a pipeline folder has no scheduler.
SD_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                    beta_schedule="scaled_linear")

_SD_UNET_BLOCKS = dict(down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                       up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD_V14_UNET: dict[str, Any] = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                                   block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                                   attention_head_dim=8, norm_num_groups=32, **_SD_UNET_BLOCKS)
SD_V14_VAE: dict[str, Any] = dict(sample_size=512, in_channels=3, out_channels=3, latent_channels=4,
                                  layers_per_block=2, block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                                  down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
# CLIP ViT-L/14's text tower. bos/eos are those of CLIP's tokenizer (<|startoftext|> 49406, <|endoftext|> 49407).
SD_V14_TEXT: dict[str, Any] = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                   num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                   projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)

# tiny-sd: the same block types on a small scale. In diffusers' UNet, `attention_head_dim` is (for SD's
# historical config) the number of heads: 2 heads here, 8 in SD v1.4.
TINY_SD_UNET: dict[str, Any] = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(16, 32, 32), cross_attention_dim=16, attention_head_dim=2,
                                    norm_num_groups=8,
                                    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
TINY_SD_VAE: dict[str, Any] = dict(sample_size=64, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                                   block_out_channels=(8, 8, 16, 16), norm_num_groups=4,
                                   down_block_types=("DownEncoderBlock2D",) * 4,
                                   up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)
# A 64-token vocabulary whose last two ids are bos / eos, as in CLIP's; 77 positions like SD's prompts.
TINY_SD_TEXT: dict[str, Any] = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                                    projection_dim=16, bos_token_id=62, eos_token_id=63, pad_token_id=1)


@dataclass(frozen=True)
class DiffusionConfigs:
    """The three architectures of a Stable-Diffusion-like pipeline and its noise schedule, as plain dicts
    (the keyword arguments of `UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextConfig` and `DDPMScheduler`)."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD_SCHEDULER))

    def fingerprint(self) -> str:
        """First 16 hex digits of the sha256 of the configs (for built-in weights' signatures)."""
        text = json.dumps({"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder,
                           "scheduler": self.scheduler}, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class DiffusionModels:
    """A built pipeline's parts (eval mode, float32, CPU) and its noise schedule's keyword arguments."""

    unet: Any
    vae: Any
    text_encoder: Any
    scheduler: dict[str, Any]


def diffusion_configs(full_size: bool = False) -> DiffusionConfigs:
    """The tiny-sd configs, or with `full_size` the real-size SD v1.4 ones (copies: safe to modify)."""
    unet, vae, text = (SD_V14_UNET, SD_V14_VAE, SD_V14_TEXT) if full_size else (TINY_SD_UNET, TINY_SD_VAE, TINY_SD_TEXT)
    return DiffusionConfigs(dict(unet), dict(vae), dict(text))


def builtin_diffusion_hash(name: str, seed: int = TINY_SEED) -> str:
    """The weights field of a built-in random-weight pipeline's signature: name, seed and config fingerprint."""
    return f"builtin:{name}:seed{seed}:{diffusion_configs(full_size=False).fingerprint()}"


def build_random_diffusion(full_size: bool = False, seed: int = TINY_SEED) -> DiffusionModels:
    """UNet, VAE and CLIP text encoder with weights drawn from `seed` (the libraries' default initialisation),
    leaving the global RNG as it was.

    Args:
        full_size: the real-size SD v1.4 architecture (about 1.07 billion parameters, 4.3 GB in float32) instead
            of tiny-sd (a few hundred thousand), e.g. to time a random-weight model of the real size.
        seed: the weights' seed; the same seed always gives the same weights.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = diffusion_configs(full_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg.unet)
        vae = AutoencoderKL(**cfg.vae)
        text = CLIPTextModel(CLIPTextConfig(**cfg.text_encoder))
    return DiffusionModels(unet.eval(), vae.eval(), text.eval(), dict(cfg.scheduler))


def save_pipeline_folder(models: DiffusionModels, folder: str | Path) -> Path:
    """Write `models` as a diffusers pipeline folder: model_index.json, unet/, vae/, text_encoder/ (each with its
    config.json and safetensors weights) and scheduler/scheduler_config.json. No tokenizer is written: the
    affinity code builds the empty prompt's ids from the text config. Returns the folder."""
    from diffusers import DDPMScheduler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    models.text_encoder.save_pretrained(folder / "text_encoder")
    DDPMScheduler(**models.scheduler).save_pretrained(folder / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "scheduler": ["diffusers", "DDPMScheduler"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def parameter_count(module: torch.nn.Module) -> int:
    """Number of parameters of `module` (for benchmark reports)."""
    return sum(p.numel() for p in module.parameters())
