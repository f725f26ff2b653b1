"""What a registered model is: its frozen `ModelSpec`. The table of them lives in `registry`; the spec stands
apart so that `weights`, which the registry uses, can name it without importing the registry back."""

from __future__ import annotations

from dataclasses import dataclass

SEGMENTER = "segmenter"
FEATURES = "features"
# a latent diffusion model whose self-attention is an affinity source (`cryoseg.unsup.affinity`), not loaded by
# `load_segmenter` / `load_feature_extractor`
DIFFUSION = "diffusion"
KINDS = (SEGMENTER, FEATURES, DIFFUSION)

# A transformers model folder: config.json and the weights side by side.
TRANSFORMERS_MARKER = "config.json"
# A diffusers pipeline folder: model_index.json at the root, each part in its own subfolder.
PIPELINE_MARKER = "model_index.json"


@dataclass(frozen=True)
class ModelSpec:
    """One named model.

    Attributes:
        name: registry name, e.g. "sam-vit-b".
        family: "sam", "sam-hq", "sam2", "dinov2", "dinov2-reg", "dinov3", "mae", "sam-encoder",
            "classical", "filterbank" or "stable-diffusion".
        kind: "segmenter", "features" or "diffusion" (see `KINDS`).
        hf_class: transformers class name (diffusion: the diffusers class of the denoiser); None for weight-free
            backends.
        hub_id: Hugging Face hub id of the weights (None if none).
        original_checkpoint: file name of Meta's original checkpoint (SAM only), else None.
        input_size: model input side in pixels (longest side after resizing); 0 for weight-free backends,
            which work on the slice at its own resolution.
        patch_size: pixels per feature cell / embedding cell in the model frame (weight-free: in slice pixels,
            with the backend's default config; diffusion: pixels per affinity-grid cell, the VAE's downsampling).
        feature_dim: channels of the features (extractors) or of the image embedding (segmenters); diffusion: the
            length of an affinity row for an `input_size` tile, (input_size / patch_size) ** 2 grid cells.
        licence: licence of the weights.
        builtin: weights need no download (tiny seeded configs and weight-free backends).
        impl: "module:Class" of a weight-free backend, imported lazily; None for transformers models.
        description: one line for `cryoseg models`.
        weights_marker: the file at the root of a weights folder that says what it is: `TRANSFORMERS_MARKER`
            (config.json, weights beside it) or `PIPELINE_MARKER` (model_index.json of a diffusers pipeline).
        weights_parts: the subfolders of a pipeline folder that must each hold a config and weights, e.g.
            ("unet", "vae", "text_encoder"); empty when the weights sit at the folder's root.
        packaged: cryoseg's own model, its weights shipped in the package (`cryoseg.models.compact`) and
            trained by `cryoseg train segmenter`.
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
    weights_marker: str = TRANSFORMERS_MARKER
    weights_parts: tuple[str, ...] = ()
    packaged: bool = False
