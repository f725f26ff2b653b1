"""A tiny ScSAM head learns a synthetic task: each image's SAM-shaped embedding carries a class-specific channel
pattern inside squares of grid cells (and the MAE-shaped one the same at its coarser grid); the head must recover
the squares and their classes at the decoder's 4x resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cryoseg.eval import segmentation_scores
from cryoseg.scsam import build_head, scsam_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_IMAGES, GRID, MAE_GRID, SIDE = 12, 8, 4, 3


def _synthetic(k: int, sam_dim: int, mae_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sam (N, sam_dim, 8, 8), mae (N, mae_dim, 4, 4) and labels (N, 32, 32): noise, plus class k's pattern inside
    one or two 3x3-cell squares per image."""
    gen = torch.Generator().manual_seed(0)
    sam_patterns = 1.5 * torch.randn(k, sam_dim, generator=gen)
    mae_patterns = 1.5 * torch.randn(k, mae_dim, generator=gen)
    sam = 0.5 * torch.randn(N_IMAGES, sam_dim, GRID, GRID, generator=gen)
    mae = 0.5 * torch.randn(N_IMAGES, mae_dim, MAE_GRID, MAE_GRID, generator=gen)
    cells = torch.zeros(N_IMAGES, GRID, GRID, dtype=torch.int64)
    for i in range(N_IMAGES):
        for square in range(2):
            cls = 1 + (i + square) % k
            y, x = (int(v) for v in torch.randint(0, GRID - SIDE + 1, (2,), generator=gen))
            if square and cells[i, y:y + SIDE, x:x + SIDE].any():
                continue  # keep squares apart
            cells[i, y:y + SIDE, x:x + SIDE] = cls
        for cls in range(1, k + 1):
            inside = cells[i] == cls
            sam[i][:, inside] += sam_patterns[cls - 1][:, None]
            share = F.interpolate(inside[None, None].float(), size=(MAE_GRID, MAE_GRID), mode="area")[0, 0]
            mae[i] += mae_patterns[cls - 1][:, None, None] * share
    labels = cells.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # the decoder's 4x grid
    return sam, mae, labels


def _miou(head, sam, mae, labels) -> float:
    head.eval()
    with torch.no_grad():
        pred = head(sam, mae).labels()
    head.train()
    return segmentation_scores(pred.numpy(), labels.numpy()).mean_iou  # foreground classes, background excluded


@pytest.mark.parametrize("k, use_mae", [(3, True), (1, False)], ids=["fused-3-classes", "sam-only-1-class"])
def test_a_tiny_head_learns_classes_encoded_in_the_embedding(tiny_sam, make_config, k, use_mae):
    cfg = make_config(k, use_mae=use_mae)
    sam, mae, labels = _synthetic(k, cfg.sam_dim, cfg.mae_dim)
    mae = mae if use_mae else None
    torch.manual_seed(0)
    head = build_head(cfg, tiny_sam)
    before = _miou(head, sam, mae, labels)
    opt = torch.optim.Adam(head.parameters(), lr=5e-3)
    losses = []
    for _ in range(100):
        loss, logs = scsam_loss(head(sam, mae), labels, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    after = _miou(head, sam, mae, labels)
    assert before < 0.5, before  # the task is not solved by the untrained head
    assert after >= 0.9, (before, after)
    assert losses[-1] < 0.2 * losses[0]
