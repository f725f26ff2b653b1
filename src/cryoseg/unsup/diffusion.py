"""Stable Diffusion self-attention as an affinity source (`DiffusionAttention`, see `affinity.AffinitySource`).

One tile goes through the pipeline once, as in the reference method (DESIGN.md, "Unsupervised segmentation with
diffusion features in detail", step 3):

1. the (T, T) tile in [0, 1] becomes a 3-channel image in [-1, 1] and is encoded by the VAE (the latent
   distribution's mean, times the VAE's scaling factor): a (4, T/8, T/8) latent for SD;
2. noise is added at ONE small timestep t (DDPM forward process, `DDPMScheduler.add_noise`) with a generator
   reseeded with `seed` for every tile, so a tile's affinity depends on the tile only (not on the order of tiles);
3. one UNet pass with the empty prompt's text embedding. Forward hooks on the decoder's (up_blocks) SELF-attention
   modules (`attn1`; the cross-attention `attn2` onto the prompt is skipped) recompute each layer's attention
   probabilities softmax(q k^T * scale), averaged over heads, from the module's input hidden states;
4. each layer's (n, n) map is resampled to the common grid, the latent's own (T/8 x T/8, the finest attention
   resolution), bilinearly in the key dimension then in the query dimension, rows renormalised, and the layers
   are averaged (weights: `DiffusionAttentionConfig.layer_weighting`). For SD at 512 that is 9 layers: 3 each at
   16 x 16, 32 x 32 and 64 x 64. (The reference's list also holds the mid block's 8 x 8 layer; it is left out
   here, as its map, upsampled 8 times, cannot place anything as thin as a membrane.)

Why forward hooks and not a custom attention processor: a hook sees the module and its input hidden states,
which is all that is needed (the module's own `to_q`, `to_k`, `heads`, `scale`), and it leaves diffusers'
processors (SDPA, xformers, ...) untouched for the pass itself. The cost is a second q/k projection and QK^T
per caught layer, small next to the UNet. Hooks are registered for one call and removed in a `finally`; what
they catch lives in a per-call accumulator (a running weighted sum on the common grid), so nothing grows across
tiles and only a few (N, N) maps (the sum, the current layer's map and its resampling) are alive at a time.

Measured on this project's 2-core CPU: about 1.5 s per 512 tile with tiny-sd (1 thread) and 14 s with a
random-weight real-size SD v1.4 (2 threads, 4.7 GB peak memory).

torch is imported here at module level (diffusers and transformers in the functions that use them):
`affinity.affinity_source` imports this module only when a diffusion model is asked for, after its checks.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CorruptFileError, InputError
from ..models.diffusion_configs import SD_SCHEDULER, DiffusionModels, build_random_diffusion, builtin_diffusion_hash
from ..models.loaders import load_checked
from ..models.weights import WeightsLocation, weights_hash
from .affinity_config import DiffusionAttentionConfig, check_tile

logger = logging.getLogger(__name__)

# --- the empty prompt ----------------------------------------------------------------------------------------------

# CLIP's BPE vocabulary ends with its two special tokens; SD v1.x's text_encoder/config.json still carries
# transformers' old placeholder ids (bos 0, eos 2), which are not the tokenizer's.
_LEGACY_SPECIAL_IDS = (0, 2)


def empty_prompt_ids(text_config: Any, tokenizer_dir: Path | None = None) -> list[int]:
    """Token ids of the empty prompt padded to the text model's length: [bos] + [eos] * (max_length - 1).

    This is what SD v1.x's CLIP tokenizer gives for "" with padding="max_length": <|startoftext|>, then
    <|endoftext|>, then padding, and SD v1.x's tokenizer pads with <|endoftext|> itself. Building the ids directly
    means no tokenizer files (merges.txt, vocab.json) are needed. The ids come from, in this order: the pipeline's
    tokenizer/vocab.json when present (with its pad token from special_tokens_map.json); the text config's
    bos/eos ids; and for configs that carry the legacy placeholders bos 0 / eos 2 (SD v1.x's does), the last two
    ids of the vocabulary, which is where CLIP's vocabulary puts <|startoftext|> (49406) and <|endoftext|> (49407).

    Args:
        text_config: a `CLIPTextConfig` (vocab_size, max_position_embeddings, bos_token_id, eos_token_id).
        tokenizer_dir: the pipeline's tokenizer/ folder, if any.

    Returns:
        max_position_embeddings token ids.
    """
    length = int(text_config.max_position_embeddings)
    bos, eos = text_config.bos_token_id, text_config.eos_token_id
    if (bos, eos) == _LEGACY_SPECIAL_IDS or bos is None or eos is None:
        bos, eos = text_config.vocab_size - 2, text_config.vocab_size - 1
    pad = eos
    vocab_file = tokenizer_dir / "vocab.json" if tokenizer_dir is not None else None
    if vocab_file is not None and vocab_file.is_file():
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
            pad_name = _pad_token(tokenizer_dir)  # type: ignore[arg-type]
            bos, eos = int(vocab["<|startoftext|>"]), int(vocab["<|endoftext|>"])
            pad = int(vocab[pad_name]) if pad_name in vocab else eos
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"cannot read the special tokens from {vocab_file}: {exc}") from exc
    return [int(bos), int(eos)] + [int(pad)] * (length - 2)


def _pad_token(tokenizer_dir: Path) -> str:
    """The pad token's text from special_tokens_map.json (a string or {"content": ...}); <|endoftext|> if absent."""
    path = tokenizer_dir / "special_tokens_map.json"
    if not path.is_file():
        return "<|endoftext|>"
    pad = json.loads(path.read_text(encoding="utf-8")).get("pad_token", "<|endoftext|>")
    return str(pad.get("content") if isinstance(pad, dict) else pad)


# --- loading -------------------------------------------------------------------------------------------------------

_PART_CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} is not a JSON object")
    return data


def _check_part_configs(folder: Path, name: str) -> None:
    """Refuse a pipeline whose parts are not SD's architectures, before loading any weights."""
    for part, cls in _PART_CLASSES.items():
        declared = _read_json(folder / part / "config.json").get("_class_name")
        if declared != cls:
            raise InputError(f"folder {folder / part} holds a '{declared}' but model '{name}' needs a {cls}")
    declared = _read_json(folder / "text_encoder" / "config.json").get("model_type")
    if declared != "clip_text_model":
        raise InputError(f"folder {folder / 'text_encoder'} holds a '{declared}' model but model '{name}' needs a "
                         "CLIP text encoder (clip_text_model)")


def load_pipeline_folder(folder: Path, name: str) -> tuple[DiffusionModels, list[int]]:
    """The UNet, VAE and text encoder of a diffusers pipeline folder (float32, CPU, eval mode), its noise schedule
    (scheduler/scheduler_config.json, else SD v1's) and the empty prompt's token ids.

    The folder's layout (model_index.json, unet/, vae/, text_encoder/ with configs and weights) was checked by
    `models.weights.locate_weights`; here the architectures are checked, then the weights are read, never
    from the network.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    _check_part_configs(folder, name)
    unet = load_checked(UNet2DConditionModel, folder / "unet", name)
    vae = load_checked(AutoencoderKL, folder / "vae", name)
    text = load_checked(CLIPTextModel, folder / "text_encoder", name)
    scheduler = dict(SD_SCHEDULER)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    if scheduler_file.is_file():  # SD v1.4 ships a PNDM config; only its noise schedule matters here
        config = _read_json(scheduler_file)
        scheduler.update({k: config[k] for k in ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                                 "trained_betas") if config.get(k) is not None})
    ids = empty_prompt_ids(text.config, folder / "tokenizer")
    return DiffusionModels(unet, vae, text, scheduler), ids


# --- attention capture ---------------------------------------------------------------------------------------------


def self_attention_layers(unet: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The decoder-side self-attention modules of `unet`: every diffusers `Attention` under `up_blocks` that is
    not a cross-attention (in SD's transformer blocks: the `attn1` of each, never `attn2`), in forward order."""
    from diffusers.models.attention_processor import Attention

    return [(f"up_blocks.{name}", module) for name, module in unet.up_blocks.named_modules()
            if isinstance(module, Attention) and not module.is_cross_attention]


def _layer_grid(n: int, latent: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of an attention layer with n tokens: the latent grid halved (ceil) k times for some k >= 0."""
    h, w = latent
    while h * w > n and (h > 1 or w > 1):
        h, w = -(-h // 2), -(-w // 2)
    if h * w != n:
        raise InputError(f"an attention layer has {n} tokens, which is no downsampling of the {latent} latent grid")
    return h, w


def resample_attention(probs: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Resample an attention map to another grid in both dimensions, rows renormalised.

    Args:
        probs: (n, n) row-stochastic, n = h * w, rows = queries and columns = keys, both row-major over (y, x).
        grid: (h, w) of `probs`.
        target: (H, W) of the result.

    Returns:
        (H * W, H * W) float32, rows sum to 1: keys bilinearly upsampled (a coarse key's mass spread over the fine
        cells it covers, then each row renormalised), then queries bilinearly interpolated (a fine query's row is a
        convex combination of its coarse neighbours' rows).
    """
    h, w = grid
    H, W = target
    if (h, w) == (H, W):
        return probs.float()
    keys = F.interpolate(probs.float().reshape(h * w, 1, h, w), size=(H, W), mode="bilinear", align_corners=False)
    keys = keys.reshape(h * w, H * W)
    keys = keys / keys.sum(dim=1, keepdim=True).clamp_min(1e-30)
    queries = F.interpolate(keys.t().reshape(H * W, 1, h, w), size=(H, W), mode="bilinear", align_corners=False)
    out = queries.reshape(H * W, H * W).t()
    return out / out.sum(dim=1, keepdim=True).clamp_min(1e-30)


class _Accumulator:
    """The per-call state of the hooks: a running weighted sum of the layers' maps on the common grid."""

    def __init__(self, latent: tuple[int, int], weighting: str) -> None:
        self.latent = latent
        self.weighting = weighting
        self.total: torch.Tensor | None = None
        self.weight = 0.0
        self.caught: list[tuple[str, tuple[int, int]]] = []

    def hook(self, name: str) -> Any:
        def catch(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            if kwargs.get("encoder_hidden_states") is not None:  # used as cross-attention after all: not ours
                return
            hidden = args[0] if args else kwargs["hidden_states"]
            probs = _attention_probs(module, hidden)
            grid = _layer_grid(probs.shape[0], self.latent)
            weight = 1.0 if self.weighting == "equal" else grid[0] / self.latent[0]
            resampled = resample_attention(probs, grid, self.latent)
            del probs
            self.total = resampled.mul_(weight) if self.total is None else self.total.add_(resampled, alpha=weight)
            self.weight += weight
            self.caught.append((name, grid))

        return catch


def _attention_probs(attn: Any, hidden: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T * scale) of a diffusers `Attention` for its input `hidden` (batch of one), averaged over heads,
    in float32 (one head at a time, so at most two (n, n) maps per layer are alive). Returns (n, n)."""
    if hidden.ndim == 4:  # (B, C, H, W) inputs are flattened by the processors the same way
        b, c, h, w = hidden.shape
        hidden = hidden.reshape(b, c, h * w).transpose(1, 2)
    if getattr(attn, "group_norm", None) is not None:
        hidden = attn.group_norm(hidden.transpose(1, 2)).transpose(1, 2)
    query, key = attn.to_q(hidden), attn.to_k(hidden)
    b, n, _ = query.shape
    query = query.reshape(b, n, attn.heads, -1).transpose(1, 2)
    key = key.reshape(b, n, attn.heads, -1).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_k", None) is not None:
        key = attn.norm_k(key)
    query, key = query[0].float(), key[0].float()
    mean = torch.zeros(n, n, dtype=torch.float32, device=query.device)
    for head in range(attn.heads):
        mean += torch.softmax(query[head] @ key[head].t() * attn.scale, dim=-1)
    return mean / attn.heads


def _to(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """`module` on `device` in `dtype`, eval mode (the dtype cast only when it changes: diffusers warns on any)."""
    module = module.to(device=device)
    if any(p.dtype != dtype for p in module.parameters()):
        module = module.to(dtype=dtype)
    return module.eval()


# --- the source ----------------------------------------------------------------------------------------------------


class DiffusionAttention:
    """Affinity from Stable Diffusion's decoder self-attention (an `affinity.AffinitySource`).

    Build it with `affinity.affinity_source(name, ...)`, which checks names, packages, device and weights first,
    or directly from loaded parts (tests and benchmarks).

    Args:
        models: UNet2DConditionModel, AutoencoderKL, CLIPTextModel (any device/dtype: moved here) and the
            DDPMScheduler keyword arguments of the noise schedule.
        name: registry name for the signature.
        token_ids: the empty prompt's ids (`empty_prompt_ids`).
        weights: the signature's weights field ("builtin:..." or "sha256:...").
        weights_path: where the weights came from ("built-in" or a folder).
        device, dtype: torch device and dtype to run in.
        voxel_size_nm: the tomogram's voxel size, which sets the timestep (`DiffusionAttentionConfig.timestep_for`).
        seed: the noise's seed, the same for every tile.
        config: the defaults (timestep, layer weighting).
    """

    def __init__(self, models: DiffusionModels, name: str, token_ids: list[int], weights: str, weights_path: str,
                 device: torch.device, dtype: torch.dtype, voxel_size_nm: float | None = None, seed: int = 0,
                 config: DiffusionAttentionConfig | None = None) -> None:
        from diffusers import DDPMScheduler

        self.name = name
        self.config = config or DiffusionAttentionConfig()
        self.device, self.dtype = device, dtype
        self.seed = int(seed)
        self.voxel_size_nm = voxel_size_nm
        self.weights, self.weights_path = weights, weights_path
        self.unet = _to(models.unet, device, dtype)
        self.vae = _to(models.vae, device, dtype)
        self.scheduler_config = dict(models.scheduler)
        self.scheduler = DDPMScheduler(**self.scheduler_config)
        self.timestep = self.config.timestep_for(voxel_size_nm, int(self.scheduler.config.num_train_timesteps))
        self.layers = [name for name, _ in self_attention_layers(self.unet)]
        if not self.layers:
            raise InputError(f"model '{name}' has no self-attention layers in its UNet's up blocks")
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.unet_factor = 2 ** (len(self.unet.config.down_block_types) - 1)
        text = _to(models.text_encoder, device, dtype)
        with torch.inference_mode():  # the empty prompt's embedding is the same for every tile: computed once
            ids = torch.tensor([token_ids], dtype=torch.long, device=device)
            self.prompt_embedding = text(ids)[0]
        del text  # not needed any more: free its weights
        self.last_caught: list[tuple[str, tuple[int, int]]] = []

    def grid(self, tile_size: int) -> tuple[int, int]:
        """(h, w) of the affinity grid for a (tile_size, tile_size) tile: the VAE latent's, tile_size / 8 for SD.

        tile_size must be a multiple of the VAE's and UNet's combined downsampling (64 for SD, 32 for tiny-sd)."""
        multiple = self.vae_factor * self.unet_factor
        if not isinstance(tile_size, (int, np.integer)) or isinstance(tile_size, bool) or tile_size < multiple \
                or tile_size % multiple:
            raise InputError(f"model '{self.name}' needs tiles whose side is a positive multiple of {multiple}, "
                             f"got {tile_size!r}")
        side = int(tile_size) // self.vae_factor
        return side, side

    def signature(self) -> dict[str, Any]:
        """JSON-able description: name, weights, timestep, seed, layers caught, device and precision, config."""
        return {"name": self.name, "source": "diffusion-self-attention", "weights": self.weights,
                "weights_path": self.weights_path, "timestep": self.timestep, "voxel_size_nm": self.voxel_size_nm,
                "seed": self.seed, "prompt": "", "latent": "mean * scaling_factor",
                "scaling_factor": float(self.vae.config.scaling_factor), "layers": list(self.layers),
                "noise_schedule": {k: v for k, v in self.scheduler_config.items() if k != "trained_betas"},
                "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "config": asdict(self.config)}

    def affinity(self, tile: np.ndarray, zoom: float = 1.0) -> np.ndarray:
        """The affinity of one tile.

        Args:
            tile: (T, T) real array in [0, 1] (pre-processed), T a multiple of `grid`'s requirement.
            zoom: ignored: Stable Diffusion sees every tile at its own 512 scale, as in the reference.

        Returns:
            (h * w, h * w) float32, rows sum to 1, (h, w) = `grid(T)`, cells row-major over (y, x); row i is
            where cell i attends, averaged over the up blocks' self-attention layers.
        """
        arr = check_tile(tile)
        grid = self.grid(arr.shape[0])
        acc = _Accumulator(grid, self.config.layer_weighting)
        modules = dict(self_attention_layers(self.unet))
        handles = [module.register_forward_hook(acc.hook(name), with_kwargs=True) for name, module in modules.items()]
        try:
            with torch.inference_mode():
                image = torch.from_numpy(arr).to(device=self.device, dtype=self.dtype)
                image = (image * 2 - 1).expand(1, 3, *arr.shape)
                latent = self.vae.encode(image).latent_dist.mean * self.vae.config.scaling_factor
                generator = torch.Generator(device="cpu").manual_seed(self.seed)
                noise = torch.randn(latent.shape, generator=generator, dtype=torch.float32).to(latent)
                t = torch.tensor([self.timestep], dtype=torch.long, device=self.device)
                noisy = self.scheduler.add_noise(latent, noise, t)
                self.unet(noisy, t, encoder_hidden_states=self.prompt_embedding, return_dict=False)
                if acc.total is None:  # cannot happen with a diffusers UNet: its up blocks' layers always run
                    raise RuntimeError(f"model '{self.name}': no self-attention layer ran")
                result = acc.total / acc.weight
                result = result / result.sum(dim=1, keepdim=True)
                out = result.cpu().numpy().astype(np.float32)
        finally:
            for handle in handles:
                handle.remove()
            self.last_caught = list(acc.caught)
            acc.total = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return out


def load_diffusion_attention(name: str, location: WeightsLocation, device: torch.device, dtype: torch.dtype,
                             voxel_size_nm: float | None = None, seed: int = 0,
                             config: DiffusionAttentionConfig | None = None) -> DiffusionAttention:
    """Build the source of registry model `name` from checked weights: built-in (tiny-sd, random seeded weights)
    or a pipeline folder (user folder or hub-cache snapshot)."""
    if location.kind == "builtin":
        from ..models.tiny import TINY_SEED

        models = build_random_diffusion(full_size=False)
        ids = empty_prompt_ids(models.text_encoder.config)
        whash, where = builtin_diffusion_hash(name, TINY_SEED), "built-in"
    else:
        folder = Path(location.path)  # type: ignore[arg-type]
        models, ids = load_pipeline_folder(folder, name)
        whash, where = weights_hash(location), location.describe()
    logger.info("loaded diffusion model '%s' from %s", name, where)
    return DiffusionAttention(models, name, ids, whash, where, device, dtype, voxel_size_nm, seed, config)


def random_diffusion_source(full_size: bool = False, *, device: str = "cpu", dtype: str = "float32",
                            voxel_size_nm: float | None = None, seed: int = 0, weights_seed: int | None = None,
                            config: DiffusionAttentionConfig | None = None) -> DiffusionAttention:
    """A source on random seeded weights (`models.diffusion_configs.build_random_diffusion`): tiny-sd, or with
    `full_size` the real-size SD v1.4 architecture, to time the diffusion path where no weights exist (its
    affinities carry no meaning). `seed` is the noise's, `weights_seed` the weights' (default `tiny.TINY_SEED`)."""
    from ..models.device import resolve_device, resolve_dtype
    from ..models.tiny import TINY_SEED
    from .affinity_config import check_voxel_size

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    wseed = TINY_SEED if weights_seed is None else int(weights_seed)
    models = build_random_diffusion(full_size=full_size, seed=wseed)
    name = "stable-diffusion-v1-4" if full_size else "tiny-sd"
    return DiffusionAttention(models, name, empty_prompt_ids(models.text_encoder.config),
                              f"random:{'sd-v1-4-architecture' if full_size else 'tiny-sd'}:seed{wseed}", "random",
                              dev, dt, check_voxel_size(voxel_size_nm), seed, config)
