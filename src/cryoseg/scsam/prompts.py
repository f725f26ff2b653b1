"""Cosine-similarity class prompt encoder of ScSAM: K learnable class prototypes are compared with the fused
embedding at every position; the resulting activation maps become, per class, the dense and sparse prompt
embeddings that SAM's mask decoder takes in place of a user's clicks.

What the paper fixes: learnable prototypes, cosine activation maps, dense prompts from the fused embedding
modulated by the maps, sparse prompts from the prototype and the most activated positions, and a term from the
prototypes' similarity matrix that keeps classes apart. What it leaves open, and what we chose:

- Prototype initialisation (our choice): orthonormal rows (when K <= D), so the separation loss starts at 0 and
  only acts when training pulls two classes together.
- Dense prompt of class k (our choice): SAM's no-mask embedding (learnable, initialised from SAM's prompt
  encoder) + a 1x1 conv of (fused * A_k). The first term is what the decoder sees when SAM gets no mask prompt,
  so the pretrained decoder starts from familiar input; the second carries where and what class k is.
- Sparse prompt of class k (our choice): 1 + n_sparse tokens.
  - The prototype token: a linear map of prototype k.
  - Per chosen position p (the n_sparse largest A_k, ties broken by torch.topk): A_k(p) * linear(fused(p)) +
    PE(p) + a foreground-point embedding. PE(p) is the decoder's own image-wide positional encoding at p (SAM
    encodes a click at a grid cell's centre the same way), and the foreground-point embedding is learnable,
    initialised from SAM's positive-point embedding, so each token starts out reading as a foreground click.
    Scaling by A_k(p) lets the sparse path train the prototypes too (the choice of positions itself has no
    gradient).
- Separation loss (our choice): mean over ordered pairs i != j of relu(cos(P_i, P_j) - margin); 0 for K = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .config import ScSAMConfig


@dataclass
class ClassPrompts:
    """The prompts of every class for one batch.

    Attributes:
        sparse: (B, K, 1 + n_sparse, D) tokens per class: the prototype token, then one per chosen position.
        dense: (B, K, D, h, w) dense prompt embedding per class.
        activation: (B, K, h, w) cosine similarity of prototype k with the fused embedding at each position.
        positions: (B, K, n_sparse) int64 flat indices (y * w + x) of the chosen positions, most activated first.
    """

    sparse: torch.Tensor
    dense: torch.Tensor
    activation: torch.Tensor
    positions: torch.Tensor


def prototype_similarity(prototypes: torch.Tensor) -> torch.Tensor:
    """(K, K) cosine similarity matrix of the (K, D) prototypes."""
    unit = F.normalize(prototypes, dim=1)
    return unit @ unit.T


def prototype_separation_loss(prototypes: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Mean over ordered pairs i != j of relu(cos(P_i, P_j) - margin): how far distinct class prototypes are closer
    than `margin` allows. A scalar tensor; 0 for a single prototype.

    Args:
        prototypes: (K, D).
        margin: the cosine similarity two prototypes may reach for free, in [-1, 1).
    """
    k = prototypes.shape[0]
    if k < 2:
        return prototypes.new_zeros(())
    sim = prototype_similarity(prototypes)
    off = ~torch.eye(k, dtype=torch.bool, device=sim.device)
    return F.relu(sim[off] - margin).mean()


class ClassPromptEncoder(nn.Module):
    """Cosine-similarity class prompt encoder (see the module docstring for every choice).

    Args:
        config: uses class_names (K), embed_dim (D) and n_sparse.
        no_mask_embed: (D,) SAM's no-mask dense embedding (`prompt_encoder.no_mask_embed.weight`) to start from;
            None: zeros.
        point_embed: (D,) SAM's positive-point embedding (`prompt_encoder.point_embed[1].weight`) to start from;
            None: zeros.
    """

    def __init__(self, config: ScSAMConfig, no_mask_embed: torch.Tensor | None = None,
                 point_embed: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        k, dim = config.num_classes, config.embed_dim
        self.prototypes = nn.Parameter(torch.empty(k, dim))
        nn.init.orthogonal_(self.prototypes)
        self.dense_proj = nn.Conv2d(dim, dim, 1)
        self.prototype_token = nn.Linear(dim, dim)
        self.position_token = nn.Linear(dim, dim)
        self.no_mask_embed = nn.Parameter(self._start(no_mask_embed, dim, "no_mask_embed"))
        self.point_embed = nn.Parameter(self._start(point_embed, dim, "point_embed"))

    @staticmethod
    def _start(value: torch.Tensor | None, dim: int, name: str) -> torch.Tensor:
        if value is None:
            return torch.zeros(dim)
        value = value.detach().reshape(-1).float().clone()
        if value.numel() != dim:
            raise InputError(f"{name} has {value.numel()} values, the prompt width is {dim}")
        return value

    def activation(self, fused: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each prototype with the fused embedding at each position.

        Args:
            fused: (B, D, h, w).

        Returns:
            (B, K, h, w) in [-1, 1].
        """
        return torch.einsum("bdhw,kd->bkhw", F.normalize(fused, dim=1), F.normalize(self.prototypes, dim=1))

    def similarity(self) -> torch.Tensor:
        """(K, K) cosine similarity matrix of the prototypes: how the classes relate."""
        return prototype_similarity(self.prototypes)

    def separation_loss(self) -> torch.Tensor:
        """`prototype_separation_loss` of this encoder's prototypes with the config's margin (a scalar tensor)."""
        return prototype_separation_loss(self.prototypes, self.config.prototype_margin)

    def forward(self, fused: torch.Tensor, image_pe: torch.Tensor) -> ClassPrompts:
        """Prompts of every class.

        Args:
            fused: (B, D, h, w) fused embedding.
            image_pe: (1, D, h, w) the decoder's image-wide positional encoding on the same grid.

        Returns:
            ClassPrompts (sparse (B, K, 1 + n_sparse, D), dense (B, K, D, h, w), activation (B, K, h, w)).
        """
        b, dim, h, w = fused.shape
        k, n = self.config.num_classes, self.config.n_sparse
        act = self.activation(fused)  # (B, K, h, w)

        # dense: fused modulated by each class's map; classes folded into the batch for the 1x1 conv
        modulated = (fused.unsqueeze(1) * act.unsqueeze(2)).reshape(b * k, dim, h, w)
        dense = self.dense_proj(modulated).reshape(b, k, dim, h, w) + self.no_mask_embed.view(1, 1, dim, 1, 1)

        proto = self.prototype_token(self.prototypes).unsqueeze(0).unsqueeze(2).expand(b, k, 1, dim)
        values, positions = act.flatten(2).topk(n, dim=2)  # (B, K, n), most activated first
        flat = fused.flatten(2).transpose(1, 2)  # (B, h*w, D)
        feats = torch.gather(flat.unsqueeze(1).expand(b, k, h * w, dim), 2,
                             positions.unsqueeze(-1).expand(b, k, n, dim))  # (B, K, n, D)
        pe = image_pe.flatten(2).transpose(1, 2)[0][positions]  # (B, K, n, D)
        tokens = values.unsqueeze(-1) * self.position_token(feats) + pe + self.point_embed
        sparse = torch.cat([proto, tokens], dim=2)
        return ClassPrompts(sparse=sparse, dense=dense, activation=act, positions=positions)
