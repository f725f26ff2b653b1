"""The one registry of named models, and the two loaders every method uses.

Each model is a frozen `ModelSpec`. `load_segmenter` / `load_feature_extractor` find the weights
(`weights.py`), build the transformers model, move it to the chosen device and precision (`device.py`) and
wrap it. An unknown name raises `UnknownModelError` listing close names; missing weights raise
`WeightsNotFoundError` saying where we looked and how to get them. There is never a silent fallback.

This module imports no torch at import time: the CLI imports it eagerly for `cryoseg models`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, InputError, MissingDependencyError, UnknownModelError, WeightsNotFoundError
from .base import FeatureExtractor, PromptableSegmenter
from .weights import WeightsLocation, locate_weights, places_looked, weights_hash

logger = logging.getLogger(__name__)

SEGMENTER = "segmenter"
FEATURES = "features"

# What the transformers backends import, beyond the base install, and how a user gets it.
HF_BACKEND_PACKAGES = ("torch", "transformers", "safetensors", "huggingface_hub")
MODELS_EXTRA_HINT = ("install the torch build for your machine (CPU: pip install torch==2.13.0), "
                     "then pip install 'cryoseg[models]'")


@dataclass(frozen=True)
class ModelSpec:
    """One named model.

    Attributes:
        name: registry name, e.g. "sam-vit-b".
        family: "sam", "sam-hq", "sam2", "dinov2", "dinov2-reg", "dinov3", "mae", "sam-encoder",
            "classical" or "filterbank".
        kind: "segmenter" or "features".
        hf_class: transformers class name (None for weight-free backends).
        hub_id: Hugging Face hub id of the weights (None if none).
        original_checkpoint: file name of Meta's original checkpoint (SAM only), else None.
        input_size: model input side in pixels (longest side after resizing); 0 for weight-free backends,
            which work on the slice at its own resolution.
        patch_size: pixels per feature cell / embedding cell in the model frame (weight-free: in slice pixels,
            with the backend's default config).
        feature_dim: channels of the features (extractors) or of the image embedding (segmenters).
        licence: licence of the weights.
        builtin: weights need no download (tiny seeded configs and weight-free backends).
        impl: "module:Class" of a weight-free backend, imported lazily; None for transformers models.
        description: one line for `cryoseg models`.
    """

    name: str
    family: str
    kind: str
    hf_class: str | None
    hub_id: str | None
    original_checkpoint: str | None
    input_size: int
    patch_size: int
    feature_dim: int
    licence: str
    builtin: bool = False
    impl: str | None = None
    description: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model's weights are on this machine.

    Attributes:
        spec: the model.
        present: True if it can be loaded without downloading.
        where: the path found ("built-in" for tiny and weight-free models), or the places looked.
        source: in one word or two: "built-in", "hub cache", "checkpoint" (Meta's .pth), "folder", "missing"
            or "no backend" (torch/transformers not installed).
    """

    spec: ModelSpec
    present: bool
    where: str
    source: str = ""


def _specs() -> list[ModelSpec]:
    specs: list[ModelSpec] = []
    sam_files = {"b": "sam_vit_b_01ec64.pth", "l": "sam_vit_l_0b3195.pth", "h": "sam_vit_h_4b8939.pth"}
    sizes = {"b": "base", "l": "large", "h": "huge"}
    for v, size in sizes.items():
        specs.append(ModelSpec(f"sam-vit-{v}", "sam", SEGMENTER, "SamModel", f"facebook/sam-vit-{size}",
                               sam_files[v], 1024, 16, 256, "apache-2.0",
                               description=f"Segment Anything ViT-{v.upper()}"))
    for v, size in sizes.items():
        specs.append(ModelSpec(f"sam-hq-vit-{v}", "sam-hq", SEGMENTER, "SamHQModel",
                               f"syscv-community/sam-hq-vit-{size}", None, 1024, 16, 256, "apache-2.0",
                               description=f"HQ-SAM ViT-{v.upper()}"))
    for v in ("tiny", "small", "base-plus", "large"):
        specs.append(ModelSpec(f"sam2-hiera-{v}", "sam2", SEGMENTER, "Sam2Model", f"facebook/sam2.1-hiera-{v}", None,
                               1024, 16, 256, "apache-2.0", description=f"SAM 2.1 Hiera-{v} (image prediction)"))
    dinov2 = {"s": ("small", 384), "b": ("base", 768), "l": ("large", 1024), "g": ("giant", 1536)}
    for v, (size, dim) in dinov2.items():
        specs.append(ModelSpec(f"dinov2-vit{v}14", "dinov2", FEATURES, "Dinov2Model", f"facebook/dinov2-{size}", None,
                               518, 14, dim, "apache-2.0", description=f"DINOv2 ViT-{v.upper()}/14"))
    for v, (size, dim) in dinov2.items():
        specs.append(ModelSpec(f"dinov2-vit{v}14-reg", "dinov2-reg", FEATURES, "Dinov2WithRegistersModel",
                               f"facebook/dinov2-with-registers-{size}", None, 518, 14, dim, "apache-2.0",
                               description=f"DINOv2 ViT-{v.upper()}/14 with registers"))
    dinov3 = {"s16": 384, "s16plus": 384, "b16": 768, "l16": 1024, "h16plus": 1280, "7b16": 4096}
    for v, dim in dinov3.items():
        specs.append(ModelSpec(f"dinov3-vit{v}", "dinov3", FEATURES, "DINOv3ViTModel",
                               f"facebook/dinov3-vit{v}-pretrain-lvd1689m", None, 512, 16, dim,
                               "DINOv3 (gated)", description=f"DINOv3 ViT-{v.upper()} (LVD-1689M)"))
    for size, patch, dim in (("base", 16, 768), ("large", 16, 1024), ("huge", 14, 1280)):
        specs.append(ModelSpec(f"mae-vit-{size}", "mae", FEATURES, "ViTMAEModel", f"facebook/vit-mae-{size}", None,
                               224, patch, dim, "apache-2.0", description=f"MAE ViT-{size} encoder (masking off)"))
    specs.append(ModelSpec("sam-vit-b-encoder", "sam-encoder", FEATURES, "SamModel", "facebook/sam-vit-base",
                           sam_files["b"], 1024, 16, 256, "apache-2.0",
                           description="SAM ViT-B image encoder as a feature extractor"))
    # weight-free: the numbers are those of the default configs (ClassicalConfig, FilterBankConfig), checked by tests
    specs.append(ModelSpec("classical", "classical", SEGMENTER, None, None, None, 0, 1, 1, "MIT", builtin=True,
                           impl="cryoseg.models.classical:ClassicalSegmenter",
                           description="weight-free point-prompted baseline segmenter"))
    specs.append(ModelSpec("filterbank", "filterbank", FEATURES, None, None, None, 0, 4, 28, "MIT", builtin=True,
                           impl="cryoseg.models.filterbank:FilterBankExtractor",
                           description="weight-free multi-scale filter-bank features"))
    tiny = [("tiny-sam", "sam", SEGMENTER, "SamModel", 8, 16),
            ("tiny-sam-hq", "sam-hq", SEGMENTER, "SamHQModel", 8, 16),
            ("tiny-sam2", "sam2", SEGMENTER, "Sam2Model", 16, 16),
            ("tiny-dinov2", "dinov2", FEATURES, "Dinov2Model", 8, 32),
            ("tiny-dinov2-reg", "dinov2-reg", FEATURES, "Dinov2WithRegistersModel", 8, 32),
            ("tiny-dinov3", "dinov3", FEATURES, "DINOv3ViTModel", 8, 32),
            ("tiny-mae", "mae", FEATURES, "ViTMAEModel", 8, 32),
            ("tiny-sam-encoder", "sam-encoder", FEATURES, "SamModel", 8, 16)]
    for name, family, kind, cls, patch, dim in tiny:
        specs.append(ModelSpec(name, family, kind, cls, None, None, 64, patch, dim, "none", builtin=True,
                               description="tiny random weights (seeded), for tests and dry runs"))
    return specs


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _specs()}


def model_names(kind: str | None = None) -> list[str]:
    """Registered names, optionally only segmenters or feature extractors."""
    return [n for n, s in REGISTRY.items() if kind is None or s.kind == kind]


def get_spec(name: str) -> ModelSpec:
    """The spec of `name`; unknown names raise `UnknownModelError` listing close names."""
    spec = REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(REGISTRY), n=5, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "known models include " + ", ".join(
            ["classical", "filterbank", "sam-vit-b", "sam2-hiera-tiny", "dinov2-vitl14-reg", "tiny-sam"])
        raise UnknownModelError(f"unknown model {name!r}; {hint} (`cryoseg models` lists all)")
    return spec


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        return False


def missing_packages(spec: ModelSpec) -> list[str]:
    """The Python packages `spec`'s backend needs that are not installed (none for weight-free backends)."""
    return [] if spec.impl else [name for name in HF_BACKEND_PACKAGES if not _installed(name)]


def require_backend(spec: ModelSpec) -> None:
    """Raise `MissingDependencyError` in one line if `spec`'s backend packages are not installed."""
    missing = missing_packages(spec)
    if missing:
        raise MissingDependencyError(f"model '{spec.name}' needs {', '.join(missing)}, which "
                                     f"{'is' if len(missing) == 1 else 'are'} not installed: {MODELS_EXTRA_HINT}")


def list_models() -> list[ModelStatus]:
    """Every registered model with whether its weights are on this machine and where (no network)."""
    statuses = []
    for spec in REGISTRY.values():
        if missing_packages(spec):
            statuses.append(ModelStatus(spec, False, "backend not installed", "no backend"))
            continue
        if spec.builtin:
            statuses.append(ModelStatus(spec, True, "built-in", "built-in"))
            continue
        try:
            loc = locate_weights(spec)
        except WeightsNotFoundError:
            statuses.append(ModelStatus(spec, False, "not found; looked in " + ", ".join(places_looked(spec)),
                                        "missing"))
        else:
            source = "hub cache" if loc.hub_id else "checkpoint" if loc.kind == "original" else "folder"
            statuses.append(ModelStatus(spec, True, loc.describe(), source))
    return statuses


# --- loading ---------------------------------------------------------------------------------------------


def _check_kind(spec: ModelSpec, kind: str) -> None:
    if spec.kind != kind:
        what = "a promptable segmenter" if spec.kind == SEGMENTER else "a feature extractor"
        others = ", ".join(n for n in model_names(kind) if not n.startswith("tiny-"))
        raise InputError(f"model '{spec.name}' is {what}; use one of: {others}")


def _check_device_exists(device: str) -> None:
    """Refuse a GPU that is not there, also for backends that would not use it: the user asked for it."""
    if not _installed("torch"):
        raise MissingDependencyError(f"device {device!r} needs torch, which is not installed: {MODELS_EXTRA_HINT}")
    from .device import resolve_device

    resolve_device(device)


def _automatic_device() -> str:
    """The device type "auto" picks: "cpu" without torch."""
    if not _installed("torch"):
        return "cpu"
    from .device import resolve_device

    return resolve_device(None).type


def _weight_free(spec: ModelSpec, weights: Any, device: Any, dtype: Any) -> Any:
    if weights is not None:
        raise InputError(f"model '{spec.name}' is weight-free and takes no weights (got {weights})")
    from .device import parse_device, parse_precision

    dev, precision = parse_device(device), parse_precision(dtype)
    if dev not in (None, "cpu"):
        _check_device_exists(dev)
    if precision in ("float16", "bfloat16") and (dev or _automatic_device()) == "cpu":  # as the torch backends say
        raise InputError(f"precision {dtype!r} needs a GPU (cuda or mps); on the CPU use fp32")
    if dev not in (None, "cpu") or precision not in (None, "float32"):
        logger.warning("model '%s' is weight-free and runs on the CPU in float32; device/precision ignored", spec.name)
    module_name, _, cls_name = (spec.impl or "").partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls()


def _builtin_hash(spec: ModelSpec, config: Any) -> str:
    from .tiny import TINY_SEED

    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return f"builtin:{spec.name}:seed{TINY_SEED}-unit-gain:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _load_hf_model(spec: ModelSpec, weights: Any, download: bool) -> tuple[Any, WeightsLocation, str]:
    """Build the transformers model of `spec` with its weights (float32, CPU). Returns (model, location, hash)."""
    from . import tiny

    loc = locate_weights(spec, weights, download)
    if loc.kind == "builtin":
        config = tiny.tiny_config(spec.name)
        model = tiny.build_tiny_model(spec.name)
        whash = _builtin_hash(spec, config)
    elif loc.kind == "original":
        if spec.family not in ("sam", "sam-encoder"):
            raise InputError(f"model '{spec.name}': original .pth checkpoints are read for SAM ViT-B/L/H only; "
                             f"use a transformers folder or hub id ({spec.hub_id})")
        from .sam_checkpoint import load_original_sam

        if spec.name in tiny.TINY_CONFIGS:
            config = tiny.tiny_config(spec.name)
        elif tiny.has_full_size_config(spec.name):
            config = tiny.full_size_config(spec.name)
        else:
            raise InputError(f"model '{spec.name}' has no built-in architecture for original checkpoints")
        model = tiny.build_from_config("SamModel", config)
        load_original_sam(model, loc.path, spec.name)  # type: ignore[arg-type]
        whash = weights_hash(loc)
    else:
        model = _from_folder(spec, loc.path)  # type: ignore[arg-type]
        whash = weights_hash(loc)
    if spec.family == "sam-encoder":
        model = model.vision_encoder  # only the image encoder is used; the decoder is dropped
    logger.info("loaded model '%s' from %s", spec.name, loc.describe())
    return model, loc, whash


@contextmanager
def _hf_progress() -> Iterator[None]:
    """transformers' loading bars follow cryoseg's progress switch (--quiet), restored afterwards."""
    from transformers.utils import logging as hf_logging

    from ..progress import progress_enabled

    was_enabled = hf_logging.is_progress_bar_enabled()
    if not progress_enabled():
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _from_folder(spec: ModelSpec, folder: Path) -> Any:
    """`from_pretrained` on a local folder (never the network), checking the architecture and every key."""
    import torch
    import transformers

    cls = getattr(transformers, spec.hf_class or "")
    try:
        declared = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read {folder / 'config.json'} for model '{spec.name}': {exc}") from exc
    expected = cls.config_class.model_type
    if declared != expected:
        raise InputError(f"folder {folder} holds a '{declared}' model but '{spec.name}' needs '{expected}' "
                         f"({spec.hf_class})")
    try:
        with _hf_progress():
            model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                              dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot load model '{spec.name}' from {folder}: {first}") from exc
    except Exception as exc:  # e.g. safetensors' own error type on a truncated file
        if type(exc).__module__.split(".")[0] not in ("safetensors", "huggingface_hub"):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot load model '{spec.name}' from {folder}: {first}") from exc
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        bad = missing or mismatched
        what = "missing" if missing else "shape-mismatched"
        raise InputError(f"weights in {folder} do not fit model '{spec.name}': {len(bad)} {what} key(s) "
                         f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})")
    return model.eval()


def load_segmenter(
    name: str,
    weights: str | os.PathLike | None = None,
    device: Any = None,
    dtype: Any = None,
    download: bool = False,
) -> PromptableSegmenter:
    """Load a promptable segmenter by registry name.

    Args:
        name: registry name ("classical", "sam-vit-b", "sam2-hiera-tiny", "tiny-sam", ...).
        weights: a transformers-format folder, an original SAM .pth file, or a hub id; None looks in the
            hub cache and the default checkpoint folder.
        device: "auto"/None (cuda > mps > cpu), "cpu", "cuda", "cuda:N" or "mps".
        dtype: None/"fp32", or "fp16"/"bf16" (GPU only).
        download: allow downloading `name`'s hub weights into the hub cache if missing (off by default).
    """
    spec = get_spec(name)
    _check_kind(spec, SEGMENTER)
    if spec.impl:
        return _weight_free(spec, weights, device, dtype)
    require_backend(spec)
    from .device import resolve_device, resolve_dtype
    from .hf_segmenters import HFPromptableSegmenter

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, _, whash = _load_hf_model(spec, weights, download)
    model = model.to(device=dev, dtype=dt).eval()
    return HFPromptableSegmenter(model, spec.family, spec.name, whash)


def load_feature_extractor(
    name: str,
    weights: str | os.PathLike | None = None,
    device: Any = None,
    dtype: Any = None,
    batch_size: int | None = None,
    download: bool = False,
    input_size: int | None = None,
) -> FeatureExtractor:
    """Load a dense feature extractor by registry name.

    Args:
        name: registry name ("filterbank", "dinov2-vitl14-reg", "mae-vit-base", "tiny-dinov2", ...).
        weights, device, dtype, download: as in `load_segmenter`.
        batch_size: images per forward pass (default `hf_features.DEFAULT_BATCH_SIZE`).
        input_size: longest side of the model input (default: the spec's, e.g. 518 for DINOv2).
    """
    spec = get_spec(name)
    _check_kind(spec, FEATURES)
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise InputError(f"batch size must be a positive integer, got {batch_size}")
    if spec.impl:
        if batch_size is not None or input_size is not None:
            logger.warning("model '%s' is weight-free; batch_size/input_size ignored", spec.name)
        return _weight_free(spec, weights, device, dtype)
    require_backend(spec)
    from .device import resolve_device, resolve_dtype
    from .hf_features import DEFAULT_BATCH_SIZE, HFFeatureExtractor

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, _, whash = _load_hf_model(spec, weights, download)
    model = model.to(device=dev, dtype=dt).eval()
    return HFFeatureExtractor(model, spec.family, spec.name, whash, input_size or spec.input_size,
                              batch_size if batch_size is not None else DEFAULT_BATCH_SIZE)
