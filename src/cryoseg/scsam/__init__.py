"""ScSAM: supervised semantic segmentation with frozen SAM and MAE encoders and light trained modules (the Feature
Alignment and Fusion Module, the cosine-similarity class prompt encoder, SAM's mask decoder), working on the
encoders' cached outputs.

Submodules are imported on use, so `import cryoseg.scsam` does not import torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "ScSAMConfig": "config",
    "FAFM": "fafm", "FusionOutput": "fafm", "cosine_alignment_loss": "fafm",
    "ClassPromptEncoder": "prompts", "ClassPrompts": "prompts", "prototype_separation_loss": "prompts",
    "prototype_similarity": "prompts",
    "ScSAMHead": "model", "ScSAMOutput": "model", "build_head": "model", "image_positional_embedding": "model",
    "grid_positional_embedding": "model",
    "scsam_loss": "loss", "soft_dice_loss": "loss",
    "EncoderChoice": "encoders", "FrozenEncoders": "encoders", "SliceEmbeddings": "encoders",
    "MAEPretrainConfig": "pretrain", "pretrain_mae": "pretrain",
    # the end-to-end API (`cryoseg.scsam.train(...)`, `.predict(...)`) lives with the other pipelines
    "ScSAMTrainConfig": "cryoseg.pipelines.scsam", "train": "cryoseg.pipelines.scsam",
    "predict": "cryoseg.pipelines.scsam",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
