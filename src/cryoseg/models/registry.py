"""The one registry of named models: every `ModelSpec`, lookup by name, and what is on this machine.

An unknown name raises `UnknownModelError` listing close names. Whether a model's weights are here is
answered without network (`list_models`); loading them is `loaders`' job.

This module imports no torch at import time: the CLI imports it eagerly for `cryoseg models`.
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass

from ..errors import MissingDependencyError, UnknownModelError, WeightsNotFoundError
from .spec import DIFFUSION, FEATURES, PIPELINE_MARKER, SEGMENTER, ModelSpec
from .weights import locate_weights, places_looked

# the offline defaults: weight-free, so every command does real work on a fresh machine
DEFAULT_SEGMENTER = "classical"
DEFAULT_FEATURES = "filterbank"

# What the transformers backends import, beyond the base install, and how a user gets it.
HF_BACKEND_PACKAGES = ("torch", "transformers", "safetensors", "huggingface_hub")
# cryoseg's own trained models that are not transformers classes (compact-features, a MONAI U-Net)
TRAINED_IMPL_PACKAGES = ("torch", "monai", "safetensors")
MODELS_EXTRA_HINT = ("install the torch build for your machine (CPU: pip install torch==2.13.0), "
                     "then pip install 'cryoseg[models]'")
# The diffusion models (kind DIFFUSION) need diffusers on top of the transformers backend.
DIFFUSION_PACKAGES = ("diffusers",)
DIFFUSION_EXTRA_HINT = ("install the torch build for your machine (CPU: pip install torch==2.13.0), "
                        "then pip install 'cryoseg[models]' 'cryoseg[diffusion]'")
# The parts of a Stable Diffusion pipeline folder that the attention-affinity source loads.
SD_PARTS = ("unet", "vae", "text_encoder")


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
    # cryoseg's own, trained on the simulator (cryoseg.models.compact; model card: models/packaged/README.md)
    specs.append(ModelSpec("compact-sam", "sam", SEGMENTER, "SamModel", None, None, 256, 8, 64, "MIT (cryoseg)",
                           packaged=True, description="compact SAM (0.8 M parameters) trained on simulated tomograms"))
    specs.append(ModelSpec("compact-features", "compact-features", FEATURES, None, None, None, 0, 4, 32,
                           "MIT (cryoseg)", impl="cryoseg.models.compact_features:CompactFeatureExtractor",
                           packaged=True, description="compact U-Net features trained on simulated tomograms"))
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
    # Latent diffusion models, used for their self-attention (cryoseg.unsup.affinity). patch_size is the VAE's
    # downsampling (pixels per affinity-grid cell); feature_dim is the affinity row length of an input_size tile,
    # (input_size / patch_size) ** 2: 64 x 64 = 4096 cells for SD at 512, 8 x 8 = 64 for tiny-sd at 64 (tested).
    specs.append(ModelSpec("stable-diffusion-v1-4", "stable-diffusion", DIFFUSION, "UNet2DConditionModel",
                           "CompVis/stable-diffusion-v1-4", None, 512, 8, 64 * 64, "CreativeML OpenRAIL-M",
                           description="Stable Diffusion v1.4 self-attention (unsupervised segmentation)",
                           weights_marker=PIPELINE_MARKER, weights_parts=SD_PARTS))
    specs.append(ModelSpec("tiny-sd", "stable-diffusion", DIFFUSION, "UNet2DConditionModel", None, None, 64, 8, 8 * 8,
                           "none", builtin=True, description="tiny random-weight Stable Diffusion (seeded), "
                           "for tests and dry runs", weights_marker=PIPELINE_MARKER, weights_parts=SD_PARTS))
    return specs


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _specs()}


def model_names(kind: str | None = None) -> list[str]:
    """Registered names, optionally only those of one kind ("segmenter", "features" or "diffusion")."""
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


def is_installed(package: str) -> bool:
    """Whether `package` can be imported, found without importing it (torch is slow to import)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        return False


def missing_packages(spec: ModelSpec) -> list[str]:
    """The Python packages `spec`'s backend needs that are not installed (none for weight-free backends)."""
    if spec.impl and not spec.packaged:
        return []
    if spec.impl:
        needed = TRAINED_IMPL_PACKAGES
    else:
        needed = HF_BACKEND_PACKAGES + (DIFFUSION_PACKAGES if spec.kind == DIFFUSION else ())
    return [name for name in needed if not is_installed(name)]


def extra_hint(spec: ModelSpec) -> str:
    """How to install what `spec`'s backend needs (names `cryoseg[diffusion]` for the diffusion models)."""
    return DIFFUSION_EXTRA_HINT if spec.kind == DIFFUSION else MODELS_EXTRA_HINT


def require_backend(spec: ModelSpec) -> None:
    """Raise `MissingDependencyError` in one line if `spec`'s backend packages are not installed."""
    missing = missing_packages(spec)
    if missing:
        raise MissingDependencyError(f"model '{spec.name}' needs {', '.join(missing)}, which "
                                     f"{'is' if len(missing) == 1 else 'are'} not installed: {extra_hint(spec)}")


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
