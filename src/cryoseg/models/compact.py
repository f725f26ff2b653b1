"""cryoseg's own compact models: architectures small enough for a laptop CPU, trained on the simulator
(`cryoseg train segmenter`) and shipped as package data (`models/packaged/<name>/`: a transformers folder, config.json
and model.safetensors, with SHA256SUMS checked at every load).

- compact-sam: SAM's architecture (transformers `SamModel`) at 256-pixel input, patch 8 (a 32 x 32 token grid),
  4 ViT layers of width 96 with windowed attention and one global layer, a 64-channel neck; SAM's prompt encoder and
  two-way mask decoder at width 64; low-resolution masks of 128 x 128 over the frame.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptFileError

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PretrainedConfig

PACKAGED = Path(__file__).resolve().parent / "packaged"
CHECKSUMS = "SHA256SUMS"
# compact-sam sees every slice through a Gaussian of this sigma (pixels), in training and use alike: tomograms differ
# most in their finest noise (smooth in the simulator, anti-correlated between neighbours in the DeepFinder toy
# tomograms, where an unsmoothed model found almost nothing), which a one-pixel low-pass evens out
LOW_PASS_SIGMA = 1.0


def compact_sam_config() -> PretrainedConfig:
    """The architecture of compact-sam (untrained)."""
    from transformers import SamConfig

    vision = dict(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, output_channels=64, image_size=256,
                  patch_size=8, window_size=8, global_attn_indexes=[3], mlp_dim=384, num_pos_feats=32)
    prompt = dict(hidden_size=64, image_size=256, image_embedding_size=32, mask_input_channels=16)
    decoder = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_dim=256, iou_head_hidden_dim=64,
                   layer_norm_eps=1e-5)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def packaged_folder(name: str) -> Path | None:
    """The shipped weights folder of `name`, its files checked against its SHA256SUMS; None if none is shipped.

    Raises:
        CorruptFileError: a listed file is missing or its content differs from the recorded hash.
    """
    folder = PACKAGED / name
    sums = folder / CHECKSUMS
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        digest, filename = line.split(maxsplit=1)
        path = folder / filename.strip()
        if not path.is_file():
            raise CorruptFileError(f"shipped model '{name}': {filename} is missing; reinstall cryoseg")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise CorruptFileError(f"shipped model '{name}': {filename} does not match its recorded sha256; "
                                   "reinstall cryoseg")
    return folder


def write_checksums(folder: Path) -> Path:
    """Record the sha256 of every file of a model folder in its SHA256SUMS (done when a model is shipped)."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS]
    (folder / CHECKSUMS).write_text("\n".join(lines) + "\n")
    return folder / CHECKSUMS
