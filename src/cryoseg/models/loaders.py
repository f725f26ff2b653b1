"""The two loaders every method uses: `load_segmenter` and `load_feature_extractor`.

They look the name up in the registry, find the weights (`weights.py`), build the transformers model, move
it to the chosen device and precision (`device.py`) and wrap it; weight-free backends are constructed
directly. Missing weights raise `WeightsNotFoundError` saying where we looked and how to get them. There is
never a silent fallback to another model.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, InputError, MissingDependencyError
from .base import DEFAULT_FEATURE_BATCH_SIZE, FeatureExtractor, PromptableSegmenter
from .registry import MODELS_EXTRA_HINT, get_spec, is_installed, model_names, require_backend
from .spec import FEATURES, SEGMENTER, ModelSpec
from .weights import WeightsLocation, locate_weights, weights_hash

logger = logging.getLogger(__name__)


def _check_kind(spec: ModelSpec, kind: str) -> None:
    if spec.kind != kind:
        what = {SEGMENTER: "a promptable segmenter", FEATURES: "a feature extractor"}.get(
            spec.kind, "a diffusion model, used as an attention-affinity source (cryoseg.unsup.affinity)")
        others = ", ".join(n for n in model_names(kind) if not n.startswith("tiny-"))
        raise InputError(f"model '{spec.name}' is {what}; use one of: {others}")


def _check_device_exists(device: str) -> None:
    """Refuse a GPU that is not there, also for backends that would not use it: the user asked for it."""
    if not is_installed("torch"):
        raise MissingDependencyError(f"device {device!r} needs torch, which is not installed: {MODELS_EXTRA_HINT}")
    from .device import resolve_device

    resolve_device(device)


def _automatic_device() -> str:
    """The device type "auto" picks: "cpu" without torch."""
    if not is_installed("torch"):
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


def _packaged_network(spec: ModelSpec, weights: Any, device: Any, dtype: Any, batch_size: int | None) -> Any:
    """cryoseg's own non-transformers model (`spec.impl`, with a `from_folder` constructor): shipped weights, or a
    folder given as `weights`; float32 on the resolved device."""
    require_backend(spec)
    import torch

    from .device import resolve_device, resolve_dtype

    dev = resolve_device(device)
    if resolve_dtype(dtype, dev) != torch.float32:
        raise InputError(f"model '{spec.name}' runs in float32 only, got precision {dtype!r}")
    loc = locate_weights(spec, weights)
    module_name, _, cls_name = (spec.impl or "").partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    extra = {} if batch_size is None else {"batch_size": int(batch_size)}
    logger.info("loaded model '%s' from %s", spec.name, loc.describe())
    return cls.from_folder(loc.path, weights_hash(loc), device=dev, **extra)


def _builtin_hash(spec: ModelSpec, config: Any) -> str:
    from .tiny import TINY_SEED

    text = json.dumps(config.to_dict(), sort_keys=True, default=str)
    return f"builtin:{spec.name}:seed{TINY_SEED}-unit-gain:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def _load_hf_model(spec: ModelSpec, weights: Any, download: bool) -> tuple[Any, WeightsLocation, str]:
    """Build the transformers model of `spec` with its weights (float32, CPU). Returns (model, location, hash)."""
    from .tiny import (
        TINY_CONFIGS,
        build_from_config,
        build_tiny_model,
        full_size_config,
        has_full_size_config,
        tiny_config,
    )

    loc = locate_weights(spec, weights, download)
    if loc.kind == "builtin":
        config = tiny_config(spec.name)
        model = build_tiny_model(spec.name)
        whash = _builtin_hash(spec, config)
    elif loc.kind == "original":
        if spec.family not in ("sam", "sam-encoder"):
            raise InputError(f"model '{spec.name}': original .pth checkpoints are read for SAM ViT-B/L/H only; "
                             f"use a transformers folder or hub id ({spec.hub_id})")
        from .sam_checkpoint import load_original_sam

        if spec.name in TINY_CONFIGS:
            config = tiny_config(spec.name)
        elif has_full_size_config(spec.name):
            config = full_size_config(spec.name)
        else:
            raise InputError(f"model '{spec.name}' has no built-in architecture for original checkpoints")
        model = build_from_config("SamModel", config)
        load_original_sam(model, loc.path, spec.name)  # type: ignore[arg-type]
        whash = weights_hash(loc)
    else:
        model = _from_folder(spec, loc.path)  # type: ignore[arg-type]
        whash = weights_hash(loc)
    if spec.family == "sam-encoder":
        model = model.vision_encoder  # only the image encoder is used; the decoder is dropped
    logger.info("loaded model '%s' from %s", spec.name, loc.describe())
    return model, loc, whash


def _hf_model_on_device(spec: ModelSpec, weights: Any, device: Any, dtype: Any, download: bool) -> tuple[Any, str]:
    """The transformers model of `spec` with its weights, on the resolved device in the resolved precision
    (eval mode), and its weights hash. The device and precision are checked before any weights are read."""
    require_backend(spec)
    from .device import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    model, _, whash = _load_hf_model(spec, weights, download)
    return model.to(device=dev, dtype=dt).eval(), whash


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
    with _hf_progress():
        return load_checked(cls, folder, spec.name)


def load_checked(cls: Any, folder: Path, name: str) -> Any:
    """`cls.from_pretrained(folder)` in float32 from local files only (transformers or diffusers classes), in eval
    mode; an unreadable file is a `CorruptFileError`, missing or shape-mismatched weights an `InputError`, each in
    one line naming model `name` and the folder."""
    import torch

    dtype = {"torch_dtype" if cls.__module__.startswith("diffusers") else "dtype": torch.float32}
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True, **dtype)
    except (OSError, ValueError, RuntimeError, KeyError, EOFError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot load model '{name}' from {folder}: {first}") from exc
    except Exception as exc:  # e.g. safetensors' own error type on a truncated file
        if type(exc).__module__.split(".")[0] not in ("safetensors", "huggingface_hub"):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot load model '{name}' from {folder}: {first}") from exc
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0]) if isinstance(k, tuple) else str(k) for k in (info.get("mismatched_keys") or []))
    if missing or mismatched:
        bad = missing or mismatched
        what = "missing" if missing else "shape-mismatched"
        raise InputError(f"weights in {folder} do not fit model '{name}': {len(bad)} {what} key(s) "
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
    from .hf_segmenters import HFPromptableSegmenter

    model, whash = _hf_model_on_device(spec, weights, device, dtype, download)
    if spec.name == "compact-sam":
        from .compact_sam import CompactSamSegmenter

        return CompactSamSegmenter(model, whash)
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
        batch_size: images per forward pass (default `base.DEFAULT_FEATURE_BATCH_SIZE`).
        input_size: longest side of the model input (default: the spec's, e.g. 518 for DINOv2).
    """
    spec = get_spec(name)
    _check_kind(spec, FEATURES)
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise InputError(f"batch size must be a positive integer, got {batch_size}")
    if spec.impl and spec.packaged:
        return _packaged_network(spec, weights, device, dtype, batch_size)
    if spec.impl:
        if batch_size is not None or input_size is not None:
            logger.warning("model '%s' is weight-free; batch_size/input_size ignored", spec.name)
        return _weight_free(spec, weights, device, dtype)
    from .hf_features import HFFeatureExtractor

    model, whash = _hf_model_on_device(spec, weights, device, dtype, download)
    return HFFeatureExtractor(model, spec.family, spec.name, whash, input_size or spec.input_size,
                              batch_size if batch_size is not None else DEFAULT_FEATURE_BATCH_SIZE)
