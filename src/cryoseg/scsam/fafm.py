"""Feature Alignment and Fusion Module (FAFM) of ScSAM: brings the frozen SAM and MAE embeddings into one space on
one grid, measures how well their directions agree (the alignment loss) and fuses them with a per-position
weighting of the two sources (the spatial recalibration).

What the paper fixes: 1x1 projections to one width, a cosine-similarity alignment loss, a spatial recalibration
that weights the two sources. What it leaves open, and what we chose:

- Order of projection and resampling (our choice): project first, then resample MAE's grid to SAM's. A 1x1
  convolution and bilinear resampling commute (the bilinear weights sum to 1, so even the bias passes through),
  and projecting on MAE's small grid (14 x 14) is much cheaper than on SAM's (64 x 64).
- Resampling (our choice): bilinear, align_corners=False (both grids tile the same image extent), antialiased
  when the MAE grid is larger than the target along an axis.
- SAM projection initialisation (our choice): the identity when sam_dim == embed_dim (zero bias), so at the start
  SAM's pretrained mask decoder receives SAM's own embedding, the input it was trained on. The MAE projection
  keeps PyTorch's default initialisation.
- Alignment loss (our choice of reduction): mean over batch and positions of 1 - cos(p_sam, p_mae), the cosine
  taken across channels. It acts on directions only, so each source keeps its own scale.
- Spatial recalibration (our choice of network): concat(p_sam, p_mae) (2D channels) -> 3x3 conv to max(D // 4, 8)
  channels (a little spatial context) -> GELU -> 1x1 conv to 2 channels -> softmax over the two sources at each
  position. fused = w_sam * p_sam + w_mae * p_mae. No residual and no norm: the weights are convex, so the fused
  embedding stays on the scale of its sources (and, for SAM, of what the decoder expects); the tiny training test
  converges without either.
- One encoder (the ablations): the projection only, no recalibration, alignment loss exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import ScSAMConfig


@dataclass
class FusionOutput:
    """What the FAFM gives the rest of the head.

    Attributes:
        fused: (B, D, h, w) fused embedding on the config's grid (D = embed_dim).
        alignment_loss: scalar tensor; mean 1 - cosine between the projected embeddings (0 with one encoder).
        weights: (B, 2, h, w) per-position weights of (SAM, MAE), summing to 1; None with one encoder.
    """

    fused: torch.Tensor
    alignment_loss: torch.Tensor
    weights: torch.Tensor | None


def cosine_alignment_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over batch and positions of 1 - cosine similarity between `a` and `b` across channels.

    Args:
        a, b: (B, D, h, w) embeddings on the same grid.

    Returns:
        A scalar tensor in [0, 2]: 0 when the two point the same way at every position.
    """
    if a.shape != b.shape or a.dim() != 4:
        raise InputError(f"alignment needs two (B, D, h, w) maps of one shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return (1.0 - F.cosine_similarity(a, b, dim=1, eps=eps)).mean()


def resample(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of (B, C, hm, wm) to (B, C, h, w) = grid (antialiased where it shrinks)."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    shrink = x.shape[-2] > grid[0] or x.shape[-1] > grid[1]
    return F.interpolate(x, size=tuple(grid), mode="bilinear", align_corners=False, antialias=shrink)


def check_embedding(x: torch.Tensor, name: str, channels: int) -> None:
    """Refuse anything but a (B, channels, h, w) floating-point tensor, with a one-line InputError."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} embedding must be a torch tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != channels or x.shape[-1] < 1 or x.shape[-2] < 1 or x.shape[0] < 1:
        raise InputError(f"{name} embedding must be (B, {channels}, h, w), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} embedding must be floating point, got {x.dtype}")


class FAFM(nn.Module):
    """Feature Alignment and Fusion Module (see the module docstring for every choice).

    Args:
        config: uses use_sam, use_mae, sam_dim, mae_dim, embed_dim and grid.
    """

    def __init__(self, config: ScSAMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.sam_proj = nn.Conv2d(config.sam_dim, dim, 1) if config.use_sam else None
        self.mae_proj = nn.Conv2d(config.mae_dim, dim, 1) if config.use_mae else None
        if self.sam_proj is not None and config.sam_dim == dim:
            # start from SAM's own embedding, which the pretrained decoder knows
            with torch.no_grad():
                self.sam_proj.weight.copy_(torch.eye(dim).reshape(dim, dim, 1, 1))
                self.sam_proj.bias.zero_()
        self.recalibration: nn.Sequential | None = None
        if config.use_sam and config.use_mae:
            hidden = max(dim // 4, 8)
            self.recalibration = nn.Sequential(nn.Conv2d(2 * dim, hidden, 3, padding=1), nn.GELU(),
                                               nn.Conv2d(hidden, 2, 1))

    def project(self, sam: torch.Tensor | None, mae: torch.Tensor | None
                ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The two embeddings projected to embed_dim on the config's grid: ((B, D, h, w) or None) x 2."""
        p_sam = self.sam_proj(sam) if self.sam_proj is not None else None
        p_mae = resample(self.mae_proj(mae), self.config.grid) if self.mae_proj is not None else None
        return p_sam, p_mae

    def forward(self, sam: torch.Tensor | None, mae: torch.Tensor | None) -> FusionOutput:
        """Align and fuse.

        Args:
            sam: (B, sam_dim, h, w) SAM image embedding with (h, w) = config.grid; None iff not config.use_sam.
            mae: (B, mae_dim, hm, wm) MAE patch-grid embedding (any grid); None iff not config.use_mae.

        Returns:
            FusionOutput with the fused (B, embed_dim, h, w) embedding.
        """
        cfg = self.config
        for name, x, used, channels in (("SAM", sam, cfg.use_sam, cfg.sam_dim),
                                        ("MAE", mae, cfg.use_mae, cfg.mae_dim)):
            if used and x is None:
                raise InputError(f"this ScSAM head uses the {name} encoder but no {name} embedding was given")
            if not used and x is not None:
                raise InputError(f"this ScSAM head was configured without the {name} encoder; pass None for it")
            if x is not None:
                check_embedding(x, name, channels)
        if sam is not None and tuple(sam.shape[-2:]) != cfg.grid:
            raise InputError(f"SAM embedding grid {tuple(sam.shape[-2:])} differs from the config's grid {cfg.grid}")
        if sam is not None and mae is not None and sam.shape[0] != mae.shape[0]:
            raise InputError(f"SAM and MAE batches differ: {sam.shape[0]} and {mae.shape[0]}")

        p_sam, p_mae = self.project(sam, mae)
        if p_sam is None or p_mae is None:
            only = p_sam if p_sam is not None else p_mae
            return FusionOutput(fused=only, alignment_loss=only.new_zeros(()), weights=None)
        alignment = cosine_alignment_loss(p_sam, p_mae)
        # per position, how much each source counts; softmax over the two sources (channel axis)
        weights = torch.softmax(self.recalibration(torch.cat([p_sam, p_mae], dim=1)), dim=1)
        fused = weights[:, :1] * p_sam + weights[:, 1:] * p_mae
        return FusionOutput(fused=fused, alignment_loss=alignment, weights=weights)
