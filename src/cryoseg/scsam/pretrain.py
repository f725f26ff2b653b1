"""Self-supervised MAE pretraining on the user's own unlabelled slices: ScSAM's "cellular prior" for their data.

ScSAM's MAE encoder is pretrained on cell images. Unlabelled tomograms and EM stacks are plentiful, so cryoseg
lets a user pretrain (from scratch, or continuing from an MAE folder) a masked autoencoder
(`transformers.ViTMAEForPreTraining`) on slices of their own volumes, and saves its encoder where
`cryoseg.models.load_feature_extractor` reads it:

    result = pretrain_mae([volume], MAEPretrainConfig(base="mae-vit-base"), "mae-run")
    features = load_feature_extractor("mae-vit-base", weights="mae-run/encoder")

What a run writes into `outdir` (all at the end, through `io.atomic.staged_folder`, report.json last):

    encoder/      the encoder alone (`ViTMAEModel`, mask ratio 0), the folder the feature extractors load
    model/        the whole pretraining model (encoder and decoder), a `--base` to continue from
    preview.png   a few slices: input, masked input, reconstruction, side by side
    report.json   parameters, data, loss per epoch, timings, versions
    .checkpoint/  model, optimiser state and history after the last saved epoch, for `resume=True`

Choices that are ours (the MAE paper sets the rest: mask ratio 0.75, AdamW with betas (0.9, 0.95) and weight
decay 0.05 on weight matrices only, random resized crops with scale (0.2, 1), flips):
- slices are the z slices at the centres of `slices` equal bins along z (the ends of a tomogram are often empty);
- each slice is clipped and scaled exactly as the MAE feature extractor does it (`models.preprocess`), and the
  crops are resized with the same function, so the encoder is trained on the input it will later see;
- crops are square (the extractor keeps the aspect ratio; a square crop keeps it too), and an epoch is one random
  crop of every slice;
- the learning rate rises linearly over `warmup_epochs`, then stays constant (no cosine decay, whose shape would
  depend on the number of epochs): a resumed run, or one extended with more epochs, continues exactly;
- every random draw of epoch e comes from (seed, e) alone, so a run interrupted and resumed equals an
  uninterrupted one with the same seed (on the same device and thread count).

torch and transformers are imported inside the functions: the CLI imports this module for its defaults.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CorruptFileError, InputError
from ..io.volume import Volume, as_volume_array
from ..models.registry import REGISTRY, get_spec
from ..progress import track

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)

MAE_FAMILY = "mae"
DEFAULT_BASE = "mae-vit-base"
ENCODER_DIR = "encoder"
MODEL_DIR = "model"
PREVIEW_FILE = "preview.png"
REPORT_FILE = "report.json"
CHECKPOINT_DIR = ".checkpoint"
_STATE_FILE = "state.json"
_OPTIMIZER_FILE = "optimizer.pt"
_BETAS = (0.9, 0.95)  # the MAE paper's AdamW betas

# Real-size MAE architectures (the MAE paper's ViT-B/L/H and facebook/vit-mae-* configs). tiny.py has none for
# MAE; the registry's spec gives patch size, width and input size, checked against these by the tests.
_MAE_SIZES: dict[str, dict[str, int]] = {
    "mae-vit-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         patch_size=16),
    "mae-vit-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                          patch_size=16),
    "mae-vit-huge": dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120,
                         patch_size=14),
}
_MAE_DECODER = dict(decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
                    decoder_intermediate_size=2048)

# Preview picture: tiles at least this many pixels wide (small inputs are scaled up by a whole factor).
PREVIEW_MIN_TILE = 128
PREVIEW_GAP = 4
PREVIEW_HEADER = 18
PREVIEW_COLUMNS = ("input", "masked input", "reconstruction")
PREVIEW_MASK_COLOUR = (40, 70, 140)  # not grey, so a masked patch cannot be mistaken for image content
_PREVIEW_BACKGROUND = (24, 24, 24)

# Settings a resumed run may change: they do not change what the saved epochs computed.
_RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "preview_slices")


def mae_names() -> list[str]:
    """Registry names of the MAE architectures a run can start from ("tiny-mae", "mae-vit-base", ...)."""
    return [name for name, spec in REGISTRY.items() if spec.family == MAE_FAMILY]


def _positive_int(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class MAEPretrainConfig:
    """Settings of `pretrain_mae`.

    Attributes:
        base: the architecture to start from: a registry name of an MAE ("tiny-mae", "mae-vit-base", ...;
            random weights, "from scratch"), or a transformers ViTMAE folder to continue from (a
            `ViTMAEForPreTraining` folder such as a previous run's `model/` or a hub snapshot of
            facebook/vit-mae-base; an encoder-only `ViTMAEModel` folder gets a fresh decoder; a previous
            run's output folder is taken as its `model/`).
        mask_ratio: fraction of the patches hidden from the encoder, in (0, 1).
        epochs: passes over the slices (each pass: one random crop of every slice).
        batch_size: crops per optimiser step.
        lr: AdamW learning rate, constant after the warmup.
        warmup_epochs: epochs over which the learning rate rises linearly (per step) from lr / steps to lr;
            0: no warmup.
        weight_decay: AdamW weight decay of weight matrices (biases, norms and tokens have none).
        input_size: side of the square model input in pixels, a multiple of the patch size; None: the registry
            spec's (e.g. 224 for mae-vit-base) or the folder's image size. A folder trains at its own size.
        slices: z slices taken per volume, at the centres of that many equal bins along z (all if fewer).
        crop_scale: (low, high) fraction of the slice's largest square that a random crop covers, by area.
        seed: seeds the initial weights, the crops, the masks and dropout.
        checkpoint_every: save the resume checkpoint after every this many epochs (and after the last).
        preview_slices: slices shown in the reconstruction preview.
    """

    base: str = DEFAULT_BASE
    mask_ratio: float = 0.75
    epochs: int = 100
    batch_size: int = 16
    lr: float = 1.5e-4
    warmup_epochs: int = 5
    weight_decay: float = 0.05
    input_size: int | None = None
    slices: int = 64
    crop_scale: tuple[float, float] = (0.2, 1.0)
    seed: int = 0
    checkpoint_every: int = 1
    preview_slices: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.base, Path):
            object.__setattr__(self, "base", str(self.base))
        if not isinstance(self.base, str) or not self.base.strip():
            raise InputError(f"base must be an MAE name ({', '.join(mae_names())}) or a folder, got {self.base!r}")
        for name in ("epochs", "batch_size", "slices", "checkpoint_every", "preview_slices"):
            _positive_int(getattr(self, name), name)
        if self.input_size is not None:
            _positive_int(self.input_size, "input_size")
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, (int, np.integer)) \
                or self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be a non-negative integer, got {self.warmup_epochs!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not _finite(self.mask_ratio) or not 0.0 < self.mask_ratio < 1.0:
            raise InputError(f"mask_ratio must be between 0 and 1 (exclusive), got {self.mask_ratio!r}")
        if not _finite(self.lr) or self.lr <= 0:
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise InputError(f"weight_decay must be a non-negative number, got {self.weight_decay!r}")
        try:
            low, high = (float(v) for v in self.crop_scale)
        except (TypeError, ValueError):
            raise InputError(f"crop_scale must be two numbers (low, high), got {self.crop_scale!r}") from None
        if not 0.0 < low <= high <= 1.0:
            raise InputError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")
        object.__setattr__(self, "crop_scale", (low, high))
        _check_base_name(self.base)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)


def _check_base_name(base: str) -> None:
    """A registered MAE name, or an existing folder (its contents are checked when the run loads it)."""
    spec = REGISTRY.get(base)
    names = ", ".join(mae_names())
    if spec is not None:
        if spec.family != MAE_FAMILY:
            raise InputError(f"base model '{base}' is not an MAE ({spec.family}); use one of {names} or an MAE folder")
        return
    path = Path(base).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise InputError(f"base {base} is a file; give an MAE name ({names}) or a transformers MAE folder")
    raise InputError(f"unknown base {base!r}: neither an MAE name ({names}) nor an existing folder")


@dataclass
class MAEPretrainResult:
    """What `pretrain_mae` did.

    Attributes:
        history: mean masked-patch reconstruction loss (MSE of normalised pixels) of every epoch, from the first
            epoch of the run that started the checkpoint (a resumed run includes the epochs before it).
        seconds: wall-clock seconds of training, summed over the run and the runs it resumed.
        files: what was written: "encoder", "model" (folders), "preview", "report" (files).
        start_epoch: the epoch this call started at (0, or the checkpoint's epoch when resumed).
        feature_extractor: the registry name to load the encoder with:
            `load_feature_extractor(feature_extractor, weights=files["encoder"])`.
        input_size: side of the square model input the encoder was trained at.
    """

    history: list[float]
    seconds: float
    files: dict[str, Path]
    start_epoch: int = 0
    feature_extractor: str = DEFAULT_BASE
    input_size: int = 0


# --- architecture ---------------------------------------------------------------------------------------------

@dataclass
class _Base:
    """Where the model comes from: a registry architecture (folder None) or a folder, with its ViTMAEConfig."""

    config: Any
    folder: Path | None
    input_size: int
    patch_size: int
    feature_extractor: str


def _patch(config: Any) -> int:
    p = config.patch_size
    return int(p[0] if isinstance(p, (list, tuple)) else p)


def _image_size(config: Any) -> int:
    s = config.image_size
    if isinstance(s, (list, tuple)):
        if int(s[0]) != int(s[1]):
            raise InputError(f"MAE image size {tuple(s)} is not square; pretraining uses square inputs")
        return int(s[0])
    return int(s)


def _architecture_config(name: str) -> Any:
    """The ViTMAEConfig of registered MAE `name`, built in code (nothing downloaded)."""
    from transformers import ViTMAEConfig

    from ..models.tiny import TINY_CONFIGS, tiny_config

    if name in TINY_CONFIGS:
        return tiny_config(name)
    if name in _MAE_SIZES:
        spec = get_spec(name)
        return ViTMAEConfig(**_MAE_SIZES[name], **_MAE_DECODER, image_size=spec.input_size)
    raise InputError(f"MAE '{name}' has no built-in architecture; known: {', '.join(_MAE_SIZES)}")


def _model_folder(base: str) -> Path:
    """The transformers folder of a `base` path: the folder itself, or a pretraining run's `model/`."""
    path = Path(base).expanduser()
    for folder in (path, path / MODEL_DIR):
        if (folder / "config.json").is_file():
            return folder
    raise InputError(f"base folder {path} is not a transformers model folder (no config.json)")


def _folder_config(folder: Path) -> Any:
    from transformers import ViTMAEConfig

    try:
        declared = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise CorruptFileError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    if declared != ViTMAEConfig.model_type:
        raise InputError(f"base folder {folder} holds a '{declared}' model, not an MAE ('{ViTMAEConfig.model_type}')")
    try:
        return ViTMAEConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot read the MAE config in {folder}: {first}") from exc


def _feature_name(config: Any) -> str:
    """The registry MAE whose patch size and width match `config` (real sizes before tiny), else the default."""
    for name in sorted(mae_names(), key=lambda n: n.startswith("tiny-")):
        spec = REGISTRY[name]
        if spec.patch_size == _patch(config) and spec.feature_dim == int(config.hidden_size):
            return name
    return DEFAULT_BASE


def _resolve_base(cfg: MAEPretrainConfig) -> _Base:
    """The architecture, its input size and the registry name of its encoder; every check before any work."""
    if cfg.base in REGISTRY:
        config = copy.deepcopy(_architecture_config(cfg.base))
        folder = None
        size = cfg.input_size or get_spec(cfg.base).input_size
        config.image_size = size  # from scratch: the position embeddings are built for the training size
        name = cfg.base
    else:
        folder = _model_folder(cfg.base)
        config = _folder_config(folder)
        size = _image_size(config)
        if cfg.input_size is not None and cfg.input_size != size:
            raise InputError(f"base folder {folder} was trained at input size {size}; continuing from it trains at "
                             f"that size (got input_size {cfg.input_size})")
        name = _feature_name(config)
    patch = _patch(config)
    if size % patch:
        raise InputError(f"input size {size} is not a multiple of the patch size {patch} of base '{cfg.base}'")
    n_patches = (size // patch) ** 2
    if int(n_patches * (1 - cfg.mask_ratio)) < 1:
        raise InputError(f"mask ratio {cfg.mask_ratio:g} leaves no visible patch of the {n_patches} at input size "
                         f"{size}; lower it")
    config.mask_ratio = float(cfg.mask_ratio)
    return _Base(config, folder, size, patch, name)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own bars and load reports are off while we save and load (we check the keys ourselves)."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_pretraining_model(folder: Path, seed: int, what: str) -> Any:
    """`ViTMAEForPreTraining` from a local folder: every encoder key must be there and fit; missing decoder keys
    (an encoder-only folder) are drawn from `seed`."""
    import torch
    from transformers import ViTMAEForPreTraining

    try:
        with _quiet_transformers(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # what is not in the folder (a fresh decoder) is drawn from the seed
            model, info = ViTMAEForPreTraining.from_pretrained(str(folder), local_files_only=True,
                                                               output_loading_info=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot load the MAE {what} {folder}: {first}") from exc
    except Exception as exc:  # safetensors' own error type on a truncated file
        if type(exc).__module__.split(".")[0] not in ("safetensors", "huggingface_hub"):
            raise
        raise CorruptFileError(f"cannot load the MAE {what} {folder}: {exc}") from exc
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in (info.get("mismatched_keys") or []))
    encoder_missing = [k for k in missing if not k.startswith("decoder.")]
    if encoder_missing or mismatched:
        bad, how = (encoder_missing, "missing") if encoder_missing else (mismatched, "shape-mismatched")
        raise InputError(f"weights in {what} {folder} do not fit its MAE config: {len(bad)} {how} key(s) "
                         f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})")
    if missing:
        logger.info("%s holds an encoder only; the decoder starts from random weights (seed %d)", folder, seed)
    return model


def _freeze_positions(model: Any) -> Any:
    """Keep MAE's fixed sin-cos position embeddings fixed: transformers builds them frozen, but `from_pretrained`
    hands them back trainable (seen with transformers 5), which would also change the optimiser's groups."""
    model.vit.embeddings.position_embeddings.requires_grad_(False)
    model.decoder.decoder_pos_embed.requires_grad_(False)
    return model


def _build_model(base: _Base, seed: int) -> Any:
    """The pretraining model: from the folder, or the architecture with the transformers init drawn from `seed`
    (not `tiny.build_tiny_model`'s unit-gain redraw, which would also overwrite the fixed sin-cos positions)."""
    if base.folder is not None:
        model = _load_pretraining_model(base.folder, seed, "base folder")
        model.config.mask_ratio = base.config.mask_ratio
        return model
    from ..models.tiny import build_from_config

    return build_from_config("ViTMAEForPreTraining", base.config, seed=seed)


# --- data ------------------------------------------------------------------------------------------------------

def _check_volumes(volumes: Sequence[np.ndarray | Volume]) -> list[tuple[np.ndarray, Volume | None]]:
    if isinstance(volumes, (np.ndarray, Volume)) or not isinstance(volumes, Sequence):
        raise InputError("volumes must be a list of (Z, Y, X) arrays or Volumes")
    if len(volumes) == 0:
        raise InputError("no volumes given; MAE pretraining needs at least one")
    out = []
    for i, vol in enumerate(volumes):
        try:
            arr = as_volume_array(vol)
        except InputError as exc:
            raise InputError(f"volume {i + 1}: {exc}") from None
        out.append((arr, vol if isinstance(vol, Volume) else None))
    return out


def _slice_indices(depth: int, n: int) -> np.ndarray:
    """The z at the centres of `n` equal bins of [0, depth) (all z when n >= depth), ascending and distinct."""
    if n >= depth:
        return np.arange(depth)
    return np.unique(((np.arange(n) + 0.5) * depth / n).astype(int))


def _storage_side(input_size: int, crop_scale: tuple[float, float]) -> int:
    """Shorter side a stored slice needs: the smallest crop then still has `input_size` pixels (no detail lost)."""
    return int(math.ceil(input_size / math.sqrt(crop_scale[0])))


def _prepare_slices(vols: list[tuple[np.ndarray, Volume | None]], cfg: MAEPretrainConfig, input_size: int,
                    patch: int) -> tuple[list[np.ndarray], list[str]]:
    """The training slices: each (H, W) z slice clipped and scaled to [0, 1] as the MAE feature extractor does,
    then shrunk (antialiased, with the extractor's resize) so its shorter side is at most what the smallest crop
    needs. Returns the (h, w) float32 images and their sources "<volume>:z<index>"."""
    from ..models.preprocess import (
        DEFAULT_PERCENTILES,
        Geometry,
        normalize_intensity,
        to_model_input,
    )

    limit = _storage_side(input_size, cfg.crop_scale)
    images, sources = [], []
    for i, (arr, vol) in enumerate(vols):
        _, height, width = arr.shape
        if min(height, width) < patch:
            raise InputError(f"volume {i + 1}: slices of {height} x {width} pixels are smaller than one "
                             f"{patch}-pixel patch")
        name = vol.source.name if vol is not None and vol.source is not None else f"volume{i + 1}"
        scale = min(1.0, limit / min(height, width))
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        for z in _slice_indices(arr.shape[0], cfg.slices):
            try:
                image01 = normalize_intensity(np.asarray(arr[int(z)]), DEFAULT_PERCENTILES)
            except InputError as exc:
                raise InputError(f"{name}, slice z={int(z)}: {exc}") from None
            if size != (height, width):  # mean 0, std 1: only the extractor's resize, no normalisation
                image01 = to_model_input(image01, Geometry((height, width), size, size), (0.0,) * 3,
                                         (1.0,) * 3)[0, 0].numpy()
            images.append(np.ascontiguousarray(image01, dtype=np.float32))
            sources.append(f"{name}:z{int(z)}")
    return images, sources


def _fingerprint(images: list[np.ndarray]) -> str:
    """sha256 of the prepared slices: a resumed run must train on the same data."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(str(image.shape).encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


def _crop_pixels(images: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator, cfg: MAEPretrainConfig,
                 input_size: int, patch: int, device: Any) -> torch.Tensor:
    """(B, 3, S, S) model input: a random square crop of each picked slice (area fraction in `crop_scale` of its
    largest square), randomly flipped, resized and normalised by the feature extractor's functions."""
    import torch

    from ..models.preprocess import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        patch_geometry,
        to_model_input,
    )

    low, high = cfg.crop_scale
    batch = []
    for index in picks:
        image = images[int(index)]
        h, w = image.shape
        side = max(1, min(h, w, int(round(math.sqrt(rng.uniform(low, high)) * min(h, w)))))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = image[y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1, :]
        geometry = patch_geometry((side, side), input_size, patch)
        batch.append(to_model_input(crop, geometry, IMAGENET_MEAN, IMAGENET_STD, device))
    return torch.cat(batch)


def _mask_noise(rng: np.random.Generator, batch: int, n_patches: int, device: Any) -> torch.Tensor:
    """(B, N) uniform noise whose argsort decides which patches are masked (drawn here, so it is seeded)."""
    import torch

    return torch.from_numpy(rng.random((batch, n_patches), dtype=np.float32)).to(device)


# --- checkpoint ------------------------------------------------------------------------------------------------

def _comparable(cfg: MAEPretrainConfig) -> dict[str, Any]:
    """The settings that decide what each epoch computes (what a resumed run may not change)."""
    values = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k not in _RESUMABLE_CHANGES}


def _optimizer(model: Any, cfg: MAEPretrainConfig) -> Any:
    """AdamW; weight matrices decay, biases, norms, tokens do not (the MAE recipe); fixed positions are frozen."""
    import torch

    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in trained if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in trained if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=_BETAS)


def _save_checkpoint(outdir: Path, model: Any, optimizer: Any, state: dict[str, Any]) -> None:
    """Model, optimiser and state after an epoch, replacing the previous checkpoint in one rename."""
    import torch

    from ..io.atomic import atomic_path

    with atomic_path(outdir / CHECKPOINT_DIR, is_dir=True) as tmp:
        tmp.mkdir()
        with _quiet_transformers():
            model.save_pretrained(str(tmp / MODEL_DIR))
        torch.save(optimizer.state_dict(), tmp / _OPTIMIZER_FILE)
        (tmp / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        state = json.loads((folder / _STATE_FILE).read_text())
        if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
            raise ValueError("no epoch number")
        return state
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read the checkpoint {folder / _STATE_FILE}: {exc}; start afresh "
                               "without resume") from exc


def _check_resumable(state: dict[str, Any], cfg: MAEPretrainConfig, fingerprint: str, folder: Path) -> None:
    saved, now = state.get("config", {}), _comparable(cfg)
    changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        what = ", ".join(f"{k}={saved.get(k)!r} then, {now.get(k)!r} now" for k in changed)
        raise InputError(f"the checkpoint in {folder} was made with other settings ({what}); resume with the same "
                         "settings (only epochs may change) or start afresh without resume")
    if state.get("data") != fingerprint:
        raise InputError(f"the checkpoint in {folder} was made on other slices; resume with the same volumes "
                         "(and voxel size, NaN policy) or start afresh without resume")
    if state["epoch"] > cfg.epochs:
        raise InputError(f"the checkpoint in {folder} is at epoch {state['epoch']}, beyond epochs={cfg.epochs}")


def _load_optimizer(optimizer: Any, path: Path) -> None:
    import torch

    try:
        optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, KeyError, EOFError) as exc:
        raise CorruptFileError(f"cannot read the optimiser state {path}: {exc}; start afresh without resume") \
            from exc


# --- preview ---------------------------------------------------------------------------------------------------

def _to_grey(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) normalised model pixels -> (B, S, S) grey in [0, 1] (the mean of the de-normalised channels)."""
    import torch

    from ..models.preprocess import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels * std + mean).mean(dim=1).clamp(0.0, 1.0).float().cpu().numpy()


def _preview_tiles(model: Any, images: list[np.ndarray], cfg: MAEPretrainConfig, input_size: int, patch: int,
                   device: Any) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Input, mask and reconstruction of a few slices (their centre squares), with a mask drawn from the seed.

    Returns (slice indices, grey inputs (K, S, S), masks (K, S, S) bool True where hidden, reconstructions
    (K, S, S) with the visible patches pasted from the input, as the MAE paper shows them)."""
    import torch

    from ..models.preprocess import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        patch_geometry,
        to_model_input,
    )

    count = min(cfg.preview_slices, len(images))
    picks = sorted({int(round(v)) for v in np.linspace(0, len(images) - 1, count)})
    pixels = []
    for index in picks:
        image = images[index]
        h, w = image.shape
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        crop = image[y0:y0 + side, x0:x0 + side]
        pixels.append(to_model_input(crop, patch_geometry((side, side), input_size, patch), IMAGENET_MEAN,
                                     IMAGENET_STD, device))
    batch = torch.cat(pixels)
    cells = input_size // patch
    noise = _mask_noise(np.random.default_rng((cfg.seed, 2)), len(picks), cells * cells, device)
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=batch, noise=noise)
        logits = out.logits
        if model.config.norm_pix_loss:  # predictions are per-patch normalised: undo it with the true patch stats
            target = model.patchify(batch)
            logits = logits * (target.var(dim=-1, keepdim=True) + 1.0e-6) ** 0.5 + target.mean(dim=-1, keepdim=True)
        recon = model.unpatchify(logits, (input_size, input_size))
    hidden = out.mask.reshape(len(picks), cells, cells).cpu().numpy() > 0.5
    hidden = np.repeat(np.repeat(hidden, patch, axis=1), patch, axis=2)
    grey = _to_grey(batch)
    pasted = np.where(hidden, _to_grey(recon), grey)
    return picks, grey, hidden, pasted


def preview_layout(rows: int, input_size: int) -> dict[str, Any]:
    """Where the preview's tiles are: one row per slice, columns `PREVIEW_COLUMNS`, a header row of titles.

    Tile (r, c) has its top-left pixel at (header + gap + r * (tile + gap), gap + c * (tile + gap)) (row, col)."""
    factor = max(1, math.ceil(PREVIEW_MIN_TILE / input_size))
    tile = input_size * factor
    return {"rows": rows, "columns": list(PREVIEW_COLUMNS), "tile": tile, "scale": factor, "gap": PREVIEW_GAP,
            "header": PREVIEW_HEADER, "mask_colour": list(PREVIEW_MASK_COLOUR),
            "height": PREVIEW_HEADER + PREVIEW_GAP + rows * (tile + PREVIEW_GAP),
            "width": PREVIEW_GAP + len(PREVIEW_COLUMNS) * (tile + PREVIEW_GAP)}


def render_preview(grey: np.ndarray, hidden: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """The preview picture of K slices.

    Args:
        grey: (K, S, S) inputs in [0, 1].
        hidden: (K, S, S) bool, True on masked patches.
        reconstruction: (K, S, S) in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB laid out as `preview_layout(K, S)` says.
    """
    from PIL import Image, ImageDraw

    rows, size = grey.shape[0], grey.shape[-1]
    layout = preview_layout(rows, size)
    tile, factor, gap, top = layout["tile"], layout["scale"], layout["gap"], layout["header"]
    canvas = np.empty((layout["height"], layout["width"], 3), np.uint8)
    canvas[:] = _PREVIEW_BACKGROUND

    def rgb(values: np.ndarray) -> np.ndarray:
        byte = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return np.repeat(np.repeat(byte, factor, axis=0), factor, axis=1)[..., None].repeat(3, axis=-1)

    for r in range(rows):
        masked = rgb(grey[r])
        masked[np.repeat(np.repeat(hidden[r], factor, axis=0), factor, axis=1)] = PREVIEW_MASK_COLOUR
        y = top + gap + r * (tile + gap)
        for c, panel in enumerate((rgb(grey[r]), masked, rgb(reconstruction[r]))):
            x = gap + c * (tile + gap)
            canvas[y:y + tile, x:x + tile] = panel
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for c, title in enumerate(PREVIEW_COLUMNS):
        draw.text((gap + c * (tile + gap) + 2, 3), title, fill=(230, 230, 230))
    return np.asarray(image)


# --- the run ---------------------------------------------------------------------------------------------------

def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence((seed, 1, epoch)).generate_state(1)[0])


def _train_epoch(model: Any, optimizer: Any, images: list[np.ndarray], cfg: MAEPretrainConfig, base: _Base,
                 epoch: int, previous: float | None, device: Any) -> float:
    """One pass: a random crop of every slice, shuffled, in batches. Returns the mean loss (per crop)."""
    import torch

    rng = np.random.default_rng((cfg.seed, 1, epoch))  # everything random in epoch e comes from (seed, e)
    order = rng.permutation(len(images))
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    n_patches = (base.input_size // base.patch_size) ** 2
    last = "" if previous is None else f", loss {previous:.4f}"
    total, count = 0.0, 0
    model.train()
    cuda = [device] if getattr(device, "type", "cpu") == "cuda" else []
    warmup = cfg.warmup_epochs * len(batches)
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(_epoch_seed(cfg.seed, epoch))  # dropout, if the config has any
        progress = track(batches, f"MAE epoch {epoch + 1}/{cfg.epochs}{last}", total=len(batches))
        for step, picks in enumerate(progress):
            # the rate is a function of the global step alone (no scheduler state to save for resuming)
            done = epoch * len(batches) + step + 1
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * min(1.0, done / warmup) if warmup else cfg.lr
            pixels = _crop_pixels(images, picks, rng, cfg, base.input_size, base.patch_size, device)
            noise = _mask_noise(rng, len(picks), n_patches, device)
            loss = model(pixel_values=pixels, noise=noise).loss
            if not torch.isfinite(loss):
                raise InputError(f"the reconstruction loss became {loss.item()} in epoch {epoch + 1}; lower the "
                                 f"learning rate (lr {cfg.lr:g})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(picks)
            count += len(picks)
    return total / count


def _share(folder: Path) -> None:
    """Give the files transformers saved the usual permissions (it may write them private, 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~mask)


def _save_encoder(model: Any, folder: Path) -> None:
    """The encoder alone as a `ViTMAEModel` folder with mask ratio 0 (how the feature extractor runs it)."""
    import torch
    from transformers import ViTMAEModel

    config = copy.deepcopy(model.vit.config)  # the encoder's config object is the whole model's: leave that alone
    config.mask_ratio = 0.0
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten at once; keep the caller's RNG
        encoder = ViTMAEModel(config)
    encoder.load_state_dict(model.vit.state_dict(), strict=True)
    with _quiet_transformers():
        encoder.save_pretrained(str(folder))
    _share(folder)


def pretrain_mae(
    volumes: Sequence[np.ndarray | Volume],
    config: MAEPretrainConfig | None,
    outdir: str | Path,
    resume: bool = False,
    device: Any = None,
) -> MAEPretrainResult:
    """Pretrain an MAE on slices of `volumes` and save its encoder for `load_feature_extractor`.

    Args:
        volumes: (Z, Y, X) arrays or `Volume`s (any real dtype, any intensity range); z slices are used.
        config: the settings (None: `MAEPretrainConfig()`).
        outdir: output folder; see the module docstring for what it holds. Files of `outdir` the run does not
            write are left alone.
        resume: continue from `outdir`'s checkpoint (same settings and data; `epochs` may grow). Without a
            checkpoint the run starts afresh. Without `resume` a previous checkpoint is replaced.
        device: "auto"/None (cuda > mps > cpu), "cpu", "cuda", "cuda:N" or "mps"; training is in float32.

    Returns:
        `MAEPretrainResult`. Bad input (volumes, base, settings, a checkpoint that does not fit) raises
        `InputError` before anything is written. Nothing is downloaded.
    """
    from PIL import Image

    from ..io.atomic import staged_folder
    from ..io.report import write_report
    from ..models.device import resolve_device

    cfg = config if config is not None else MAEPretrainConfig()
    if not isinstance(cfg, MAEPretrainConfig):
        raise InputError(f"config must be an MAEPretrainConfig, got {type(cfg).__name__}")
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError(f"output {outdir} is a file, not a folder")
    vols = _check_volumes(volumes)
    dev = resolve_device(device)
    base = _resolve_base(cfg)
    images, sources = _prepare_slices(vols, cfg, base.input_size, base.patch_size)
    fingerprint = _fingerprint(images)

    checkpoint = outdir / CHECKPOINT_DIR
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
    if resume and checkpoint.is_dir():
        state = _read_state(checkpoint)
        _check_resumable(state, cfg, fingerprint, checkpoint)
        model = _load_pretraining_model(checkpoint / MODEL_DIR, cfg.seed, "checkpoint")
    else:
        if resume:
            logger.info("no checkpoint in %s; starting afresh", outdir)
        model = _build_model(base, cfg.seed)
    model = _freeze_positions(model).to(dev)
    optimizer = _optimizer(model, cfg)
    if state["epoch"]:
        _load_optimizer(optimizer, checkpoint / _OPTIMIZER_FILE)
    # every check is done: from here on the run writes
    if not resume and checkpoint.is_dir():
        shutil.rmtree(checkpoint)  # a fresh run replaces the previous run's checkpoint
    start = int(state["epoch"])
    history = [float(v) for v in state.get("history", [])]
    seconds = float(state.get("seconds", 0.0))
    logger.info("MAE pretraining on %d slices of %d volume(s), input %d px, epochs %d to %d", len(images), len(vols),
                base.input_size, start + 1, cfg.epochs)
    for epoch in range(start, cfg.epochs):
        began = time.perf_counter()
        loss = _train_epoch(model, optimizer, images, cfg, base, epoch, history[-1] if history else None, dev)
        seconds += time.perf_counter() - began
        history.append(loss)
        logger.info("epoch %d/%d: reconstruction loss %.5f", epoch + 1, cfg.epochs, loss)
        if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
            _save_checkpoint(outdir, model, optimizer, {"epoch": epoch + 1, "history": history, "seconds": seconds,
                                                        "config": _comparable(cfg), "data": fingerprint})

    picks, grey, hidden, recon = _preview_tiles(model, images, cfg, base.input_size, base.patch_size, dev)
    inputs = [v.source for _, v in vols if v is not None and v.source is not None]
    with staged_folder(outdir, REPORT_FILE, inputs=inputs) as stage:
        _save_encoder(model, stage / ENCODER_DIR)
        with _quiet_transformers():
            model.save_pretrained(str(stage / MODEL_DIR))
        _share(stage / MODEL_DIR)
        Image.fromarray(render_preview(grey, hidden, recon)).save(stage / PREVIEW_FILE, format="PNG")
        arch = model.config
        write_report(
            stage / REPORT_FILE, kind="mae-pretraining", parameters=cfg,
            base={"name": cfg.base, "folder": str(base.folder) if base.folder else None,
                  "from": "scratch" if base.folder is None else "folder"},
            architecture={"hidden_size": arch.hidden_size, "layers": arch.num_hidden_layers,
                          "patch_size": base.patch_size, "input_size": base.input_size,
                          "decoder_hidden_size": arch.decoder_hidden_size,
                          "decoder_layers": arch.decoder_num_hidden_layers},
            data={"volumes": [{"source": str(v.source) if v is not None and v.source else None,
                               "shape": list(arr.shape),
                               "voxel_size": list(v.voxel_size) if v is not None else None} for arr, v in vols],
                  "slices": sources, "fingerprint": fingerprint},
            history=history, epochs=len(history), start_epoch=start, seconds=round(seconds, 3), device=str(dev),
            load_with={"feature_extractor": base.feature_extractor, "weights": ENCODER_DIR,
                       "input_size": base.input_size},
            preview={**preview_layout(len(picks), base.input_size), "slices": [sources[i] for i in picks],
                     "masked_patches": int(round(hidden[0].sum() / base.patch_size**2)) if len(picks) else 0},
            files={"encoder": ENCODER_DIR, "model": MODEL_DIR, "preview": PREVIEW_FILE},
        )
    files = {"encoder": outdir / ENCODER_DIR, "model": outdir / MODEL_DIR, "preview": outdir / PREVIEW_FILE,
             "report": outdir / REPORT_FILE}
    return MAEPretrainResult(history, seconds, files, start, base.feature_extractor, base.input_size)
