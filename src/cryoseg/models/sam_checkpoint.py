"""Loading Meta's original segment-anything checkpoints (sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth,
sam_vit_h_4b8939.pth) into a transformers `SamModel`, key by key, strictly.

The original names come from segment-anything's modeling code (image_encoder.py, prompt_encoder.py,
mask_decoder.py, transformer.py): `image_encoder.blocks.{i}.norm1`, `neck.{0,1,2,3}`, `prompt_encoder.pe_layer`,
`mask_downscaling.{0,1,3,4,6}`, `mask_decoder.output_upscaling.{0,1,3}`, MLP heads as `layers.{k}`, etc. The
transformers names are those of `transformers.SamModel`. Every original key must map, every model key must be
filled, and every shape must agree; otherwise a one-line error lists the first offenders.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptFileError, InputError

if TYPE_CHECKING:  # pragma: no cover
    import torch

_P = r"(weight|bias)"

# (pattern on the original key, replacement or function giving the transformers keys)
_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], list[str]]]] = [
    # image encoder
    (re.compile(r"^image_encoder\.pos_embed$"), "vision_encoder.pos_embed"),
    (re.compile(rf"^image_encoder\.patch_embed\.proj\.{_P}$"), r"vision_encoder.patch_embed.projection.\1"),
    (re.compile(rf"^image_encoder\.blocks\.(\d+)\.norm([12])\.{_P}$"), r"vision_encoder.layers.\1.layer_norm\2.\3"),
    (re.compile(rf"^image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.{_P}$"), r"vision_encoder.layers.\1.attn.\2.\3"),
    (re.compile(r"^image_encoder\.blocks\.(\d+)\.attn\.(rel_pos_[hw])$"), r"vision_encoder.layers.\1.attn.\2"),
    (re.compile(rf"^image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.{_P}$"), r"vision_encoder.layers.\1.mlp.\2.\3"),
    (re.compile(r"^image_encoder\.neck\.0\.weight$"), "vision_encoder.neck.conv1.weight"),
    (re.compile(rf"^image_encoder\.neck\.1\.{_P}$"), r"vision_encoder.neck.layer_norm1.\1"),
    (re.compile(r"^image_encoder\.neck\.2\.weight$"), "vision_encoder.neck.conv2.weight"),
    (re.compile(rf"^image_encoder\.neck\.3\.{_P}$"), r"vision_encoder.neck.layer_norm2.\1"),
    # prompt encoder: the random Fourier matrix is shared by the image-wide and the prompt positional encodings
    (re.compile(r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$"),
     lambda m: ["shared_image_embedding.positional_embedding", "prompt_encoder.shared_embedding.positional_embedding"]),
    (re.compile(r"^prompt_encoder\.point_embeddings\.(\d+)\.weight$"), r"prompt_encoder.point_embed.\1.weight"),
    (re.compile(r"^prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight$"), r"prompt_encoder.\1.weight"),
    (re.compile(rf"^prompt_encoder\.mask_downscaling\.0\.{_P}$"), r"prompt_encoder.mask_embed.conv1.\1"),
    (re.compile(rf"^prompt_encoder\.mask_downscaling\.1\.{_P}$"), r"prompt_encoder.mask_embed.layer_norm1.\1"),
    (re.compile(rf"^prompt_encoder\.mask_downscaling\.3\.{_P}$"), r"prompt_encoder.mask_embed.conv2.\1"),
    (re.compile(rf"^prompt_encoder\.mask_downscaling\.4\.{_P}$"), r"prompt_encoder.mask_embed.layer_norm2.\1"),
    (re.compile(rf"^prompt_encoder\.mask_downscaling\.6\.{_P}$"), r"prompt_encoder.mask_embed.conv3.\1"),
    # mask decoder: two-way transformer
    (re.compile(rf"^mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.{_P}$"),
     r"mask_decoder.transformer.layers.\1.layer_norm\2.\3"),
    (re.compile(rf"^mask_decoder\.transformer\.layers\.(\d+)\."
                r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)\."
                rf"(q_proj|k_proj|v_proj|out_proj)\.{_P}$"),
     r"mask_decoder.transformer.layers.\1.\2.\3.\4"),
    (re.compile(rf"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.{_P}$"),
     r"mask_decoder.transformer.layers.\1.mlp.\2.\3"),
    (re.compile(rf"^mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.{_P}$"),
     r"mask_decoder.transformer.final_attn_token_to_image.\1.\2"),
    (re.compile(rf"^mask_decoder\.transformer\.norm_final_attn\.{_P}$"),
     r"mask_decoder.transformer.layer_norm_final_attn.\1"),
    # mask decoder: tokens, upscaling
    (re.compile(r"^mask_decoder\.(iou_token|mask_tokens)\.weight$"), r"mask_decoder.\1.weight"),
    (re.compile(rf"^mask_decoder\.output_upscaling\.0\.{_P}$"), r"mask_decoder.upscale_conv1.\1"),
    (re.compile(rf"^mask_decoder\.output_upscaling\.1\.{_P}$"), r"mask_decoder.upscale_layer_norm.\1"),
    (re.compile(rf"^mask_decoder\.output_upscaling\.3\.{_P}$"), r"mask_decoder.upscale_conv2.\1"),
]

# MLP heads: original `layers.{k}` (k = 0..n-1) -> transformers proj_in / layers.{k-1} / proj_out
_MLP = re.compile(rf"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.{_P}$")


def _mlp_depths(keys: list[str]) -> dict[str, int]:
    """Number of linear layers of each MLP head present in the original state dict."""
    depth: dict[str, int] = {}
    for key in keys:
        m = _MLP.match(key)
        if m:
            depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    return depth


def map_original_key(key: str, mlp_depths: dict[str, int] | None = None) -> list[str]:
    """The transformers SamModel key(s) for one original segment-anything key ([] if unknown)."""
    m = _MLP.match(key)
    if m:
        head, k, kind = m.group(1), int(m.group(2)), m.group(3)
        n = (mlp_depths or {}).get(head, 3)
        if k == 0:
            name = "proj_in"
        elif k == n - 1:
            name = "proj_out"
        else:
            name = f"layers.{k - 1}"
        return [f"mask_decoder.{head}.{name}.{kind}"]
    for pattern, target in _RULES:
        m = pattern.match(key)
        if m:
            return target(m) if callable(target) else [m.expand(target)]
    return []


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an original SAM state dict to transformers names. Returns (converted, unmapped original keys)."""
    depths = _mlp_depths(list(state_dict))
    out: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, value in state_dict.items():
        targets = map_original_key(key, depths)
        if not targets:
            unmapped.append(key)
        for target in targets:
            out[target] = value
    return out, unmapped


def _few(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def read_original_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """torch.load a .pth safely (weights only, on the CPU); unwrap {'model': ...} / {'state_dict': ...}."""
    import pickle
    import zipfile

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CorruptFileError(f"cannot read checkpoint {path}: not a readable PyTorch weights file ({first})") from exc
    if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in ("model", "state_dict"):
        obj = next(iter(obj.values()))
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptFileError(f"checkpoint {path} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def load_original_sam(model: torch.nn.Module, path: Path, model_name: str = "sam") -> None:
    """Fill a transformers `SamModel` from an original segment-anything checkpoint, strictly.

    Raises:
        CorruptFileError: the file is not a readable checkpoint.
        InputError: keys that do not map, missing keys, or shape mismatches (the first few are listed).
    """
    original = read_original_checkpoint(Path(path))
    converted, unmapped = convert_original_state_dict(original)
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted]
    unexpected = unmapped + [k for k in converted if k not in expected]
    mismatched = [f"{k} {tuple(converted[k].shape)} vs {tuple(v.shape)}"
                  for k, v in expected.items() if k in converted and converted[k].shape != v.shape]
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
    if missing:
        problems.append(f"{len(missing)} missing key(s) ({_few(missing)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) ({_few(mismatched)})")
    if problems:
        raise InputError(f"checkpoint {path} does not fit model '{model_name}': " + "; ".join(problems))
    model.load_state_dict(converted, strict=True)
