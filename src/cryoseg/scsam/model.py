"""The ScSAM head: FAFM + cosine-similarity class prompt encoder + SAM's mask decoder, on cached outputs of the
frozen SAM and MAE encoders. Everything in it trains; SAM's positional encoding rides along as a frozen buffer.

Choices that are ours (the paper does not say):

- Logits and background: channel 0 is the background with its logit fixed at 0; channel k (1..K) is the
  decoder's single-mask logit for class k (SAM's mask token 0, `multimask_output=False`). A class wins a pixel
  where its logit is the largest and positive, which keeps SAM's own "logit > 0 is the mask" reading, and for
  K = 1 the softmax cross-entropy is exactly the per-pixel binary cross-entropy SAM is tuned with. A learned
  background map was not needed: the tiny training test converges with the fixed one.
- Classes through the decoder: the K classes ride the decoder's batch axis (B * K rows, point_batch = 1), all in
  one call. The decoder's point_batch axis cannot carry them: it adds the dense prompt to the image embedding
  per image, before repeating it per point batch, so per-class dense prompts need their own rows. It costs the
  same, as the decoder repeats the image embedding once per point batch anyway.
- Positional encoding: SAM's random-Fourier encoding (`shared_image_embedding`) evaluated at the cell centres of
  the config's grid, x and y each normalised by their own extent. On SAM's square grid this is exactly
  `SamModel.get_image_wide_positional_embeddings()`; on other grids (MAE-only ablation) it is the same encoding
  spread over the grid. It is stored as a (persistent) buffer, so a saved head carries it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import InputError
from .config import ScSAMConfig
from .fafm import FAFM
from .prompts import ClassPromptEncoder

if TYPE_CHECKING:  # pragma: no cover
    from transformers.models.sam.modeling_sam import SamMaskDecoder


@dataclass
class ScSAMOutput:
    """What the head returns for a batch.

    Attributes:
        logits: (B, K+1, 4h, 4w) low-resolution class logits; channel 0 is the background (fixed at 0), channel k
            the decoder's mask logit for class k. Their argmax over channels is the semantic segmentation.
        alignment_loss: scalar tensor, the FAFM alignment loss (0 with one encoder).
        prototype_loss: scalar tensor, the prototype separation loss (0 for K = 1).
        activation: (B, K, h, w) cosine activation map of each class prototype.
        prototype_similarity: (K, K) cosine similarity matrix of the prototypes.
        fusion_weights: (B, 2, h, w) the FAFM's per-position weights of (SAM, MAE); None with one encoder.
    """

    logits: torch.Tensor
    alignment_loss: torch.Tensor
    prototype_loss: torch.Tensor
    activation: torch.Tensor
    prototype_similarity: torch.Tensor
    fusion_weights: torch.Tensor | None

    def labels(self) -> torch.Tensor:
        """(B, 4h, 4w) int64 label map (0 background, k = class k), the argmax of `logits`."""
        return self.logits.argmax(dim=1)


def grid_positional_embedding(positional: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """SAM's positional encoding of every cell centre of `grid`.

    Args:
        positional: a transformers `SamPositionalEmbedding` (`SamModel.shared_image_embedding`), which maps
            (..., 2) x, y coordinates in [0, 1] to (..., D).
        grid: (h, w).

    Returns:
        (1, D, h, w), detached.
    """
    h, w = grid
    param = next(positional.parameters())
    y = (torch.arange(h, device=param.device, dtype=param.dtype) + 0.5) / h
    x = (torch.arange(w, device=param.device, dtype=param.dtype) + 0.5) / w
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    with torch.no_grad():
        pe = positional(torch.stack([xx, yy], dim=-1))  # (h, w, D); SAM's coordinates are (x, y)
    return pe.permute(2, 0, 1).unsqueeze(0).contiguous()


def image_positional_embedding(sam_model: nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """`grid_positional_embedding` of a transformers `SamModel`'s shared image embedding: (1, D, h, w)."""
    return grid_positional_embedding(sam_model.shared_image_embedding, grid)


class ScSAMHead(nn.Module):
    """FAFM -> class prompt encoder -> SAM mask decoder, one pass for all K classes.

    Args:
        config: the head's settings.
        mask_decoder: a transformers `SamMaskDecoder` of hidden size config.embed_dim, owned by this head (pass a
            copy, e.g. `copy.deepcopy(sam_model.mask_decoder)`: training changes it).
        image_pe: (1, embed_dim, h, w) the decoder's positional encoding on config.grid (frozen).
        no_mask_embed, point_embed: (embed_dim,) SAM prompt-encoder embeddings the class prompts start from
            (see `ClassPromptEncoder`); None: zeros.
    """

    def __init__(self, config: ScSAMConfig, mask_decoder: SamMaskDecoder, image_pe: torch.Tensor,
                 no_mask_embed: torch.Tensor | None = None, point_embed: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(config, ScSAMConfig):
            raise InputError(f"config must be an ScSAMConfig, got {type(config).__name__}")
        width = getattr(mask_decoder, "hidden_size", None)
        if width != config.embed_dim:
            raise InputError(f"the mask decoder's width {width} differs from embed_dim {config.embed_dim}")
        expected = (1, config.embed_dim, *config.grid)
        if tuple(image_pe.shape) != expected:
            raise InputError(f"image_pe must be {expected} (1, embed_dim, *grid), got {tuple(image_pe.shape)}")
        self.config = config
        self.fafm = FAFM(config)
        self.prompts = ClassPromptEncoder(config, no_mask_embed=no_mask_embed, point_embed=point_embed)
        self.mask_decoder = mask_decoder
        self.register_buffer("image_pe", image_pe.detach().clone().float())

    def forward(self, sam: torch.Tensor | None = None, mae: torch.Tensor | None = None) -> ScSAMOutput:
        """Segment a batch from its cached encoder outputs.

        Args:
            sam: (B, sam_dim, h, w) SAM image embedding, (h, w) = config.grid; None iff config.use_sam is False.
            mae: (B, mae_dim, hm, wm) MAE patch-grid embedding, any grid; None iff config.use_mae is False.

        Returns:
            ScSAMOutput with logits (B, K+1, 4h, 4w).
        """
        fusion = self.fafm(sam, mae)
        fused = fusion.fused
        b, dim, h, w = fused.shape
        k = self.config.num_classes
        prompts = self.prompts(fused, self.image_pe)

        # classes folded into the decoder's batch (b-major: row b*K + k), see the module docstring
        masks, _ = self.mask_decoder(
            image_embeddings=fused.unsqueeze(1).expand(b, k, dim, h, w).reshape(b * k, dim, h, w),
            image_positional_embeddings=self.image_pe.expand(b * k, dim, h, w),
            sparse_prompt_embeddings=prompts.sparse.reshape(b * k, 1, *prompts.sparse.shape[2:]),
            dense_prompt_embeddings=prompts.dense.reshape(b * k, dim, h, w),
            multimask_output=False,
        )  # (B*K, 1, 1, 4h, 4w)
        masks = masks.reshape(b, k, *masks.shape[-2:])
        logits = torch.cat([masks.new_zeros(b, 1, *masks.shape[-2:]), masks], dim=1)
        return ScSAMOutput(logits=logits, alignment_loss=fusion.alignment_loss,
                           prototype_loss=self.prompts.separation_loss(), activation=prompts.activation,
                           prototype_similarity=self.prompts.similarity(), fusion_weights=fusion.weights)


def build_head(config: ScSAMConfig, sam_model: nn.Module) -> ScSAMHead:
    """An ScSAM head whose mask decoder, positional encoding and prompt starting points come from `sam_model`.

    The decoder is a deep copy (the SamModel's own decoder is never changed by training the head); it is built
    even when config.use_sam is False, and then decodes the fused MAE features.

    Args:
        config: the head's settings; embed_dim must be the SAM decoder's width, and with use_sam, sam_dim the SAM
            embedding's channels.
        sam_model: a transformers `SamModel` (its weights, pretrained or random, are copied).

    Returns:
        ScSAMHead on the SamModel's device, in training mode.
    """
    from transformers.models.sam.modeling_sam import SamMaskDecoder

    if not isinstance(config, ScSAMConfig):
        raise InputError(f"config must be an ScSAMConfig, got {type(config).__name__}")
    decoder = getattr(sam_model, "mask_decoder", None)
    if not isinstance(decoder, SamMaskDecoder) or not hasattr(sam_model, "shared_image_embedding"):
        raise InputError(f"build_head needs a transformers SamModel, got {type(sam_model).__name__}")
    if decoder.hidden_size != config.embed_dim:
        raise InputError(f"embed_dim {config.embed_dim} differs from the SAM decoder's width {decoder.hidden_size}")
    channels = sam_model.config.vision_config.output_channels
    if config.use_sam and config.sam_dim != channels:
        raise InputError(f"sam_dim {config.sam_dim} differs from the SAM model's embedding channels {channels}")
    mask_decoder = copy.deepcopy(decoder)
    mask_decoder.requires_grad_(True)  # the copy trains even if the SamModel was frozen
    prompt_encoder = sam_model.prompt_encoder
    head = ScSAMHead(config, mask_decoder, image_positional_embedding(sam_model, config.grid),
                     no_mask_embed=prompt_encoder.no_mask_embed.weight[0],
                     point_embed=prompt_encoder.point_embed[1].weight[0])
    return head.to(next(decoder.parameters()).device).train()
