"""What a registered model is: its frozen `ModelSpec`. The table of them lives in `registry`; the spec stands
apart so that `weights`, which the registry uses, can name it without importing the registry back."""

from __future__ import annotations

from dataclasses import dataclass

SEGMENTER = "segmenter"
FEATURES = "features"


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
