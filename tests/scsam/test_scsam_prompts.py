"""The cosine-similarity class prompt encoder: activation maps, dense and sparse prompts, prototype separation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cryoseg.errors import InputError
from cryoseg.scsam import (
    ClassPromptEncoder,
    ScSAMConfig,
    prototype_separation_loss,
    prototype_similarity,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

D = 8


def _encoder(k=3, n_sparse=2, grid=(5, 7), **kw) -> ClassPromptEncoder:
    cfg = ScSAMConfig(class_names=[f"c{i}" for i in range(k)], embed_dim=D, sam_dim=D, grid=grid, n_sparse=n_sparse)
    return ClassPromptEncoder(cfg, **kw)


def _planted(enc: ClassPromptEncoder) -> tuple[torch.Tensor, dict[int, list[tuple[int, int]]]]:
    """(2, D, 5, 7) features orthogonal to every prototype (cosine 0), except two cells per class: one along
    prototype k (cosine 1), one tilted away from it (cosine 2 / sqrt(5) = 0.89)."""
    torch.manual_seed(1)
    with torch.no_grad():
        enc.prototypes.copy_(torch.eye(D)[:3] * torch.tensor([[2.0], [0.5], [1.0]]))  # scale must not matter
    fused = torch.randn(2, D, 5, 7)
    fused[:, :3] = 0.0  # the prototypes' directions
    cells = {0: [(1, 2), (4, 6)], 1: [(0, 0), (3, 3)], 2: [(2, 5), (0, 6)]}
    for k, ((y0, x0), (y1, x1)) in cells.items():
        fused[:, :, y0, x0] = 3.0 * torch.eye(D)[k]
        fused[:, :, y1, x1] = 2.0 * torch.eye(D)[k] + torch.eye(D)[D - 1]
    return fused, cells


def test_activation_is_the_cosine_of_prototype_and_feature():
    enc = _encoder()
    fused = torch.randn(2, D, 5, 7)
    act = enc.activation(fused)
    assert act.shape == (2, 3, 5, 7)
    for b, k, y, x in ((0, 0, 0, 0), (1, 2, 4, 6), (1, 1, 2, 3)):
        expected = F.cosine_similarity(enc.prototypes[k], fused[b, :, y, x], dim=0)
        assert act[b, k, y, x].item() == pytest.approx(expected.item(), abs=1e-5)
    assert act.abs().max().item() <= 1.0 + 1e-6


def test_sparse_tokens_sit_at_the_most_activated_positions():
    enc = _encoder(n_sparse=2)
    fused, cells = _planted(enc)
    image_pe = torch.randn(1, D, 5, 7)
    prompts = enc(fused, image_pe)
    assert prompts.sparse.shape == (2, 3, 3, D) and prompts.positions.shape == (2, 3, 2)
    for k, where in cells.items():
        assert prompts.positions[0, k].tolist() == [y * 7 + x for y, x in where]  # most activated first
    # the prototype token, then value * linear(feature) + PE + foreground-point embedding per position
    assert torch.allclose(prompts.sparse[1, 2, 0], enc.prototype_token(enc.prototypes[2]), atol=1e-6)
    y, x = cells[1][1]
    value = prompts.activation[1, 1, y, x]
    expected = value * enc.position_token(fused[1, :, y, x]) + image_pe[0, :, y, x] + enc.point_embed
    assert torch.allclose(prompts.sparse[1, 1, 2], expected, atol=1e-5)


def test_dense_prompt_is_the_fused_embedding_modulated_by_the_class_map():
    no_mask = torch.randn(D)
    enc = _encoder(no_mask_embed=no_mask)
    fused, _ = _planted(enc)
    prompts = enc(fused, torch.zeros(1, D, 5, 7))
    assert prompts.dense.shape == (2, 3, D, 5, 7)
    assert torch.equal(enc.no_mask_embed.detach(), no_mask)
    k = 1
    expected = enc.dense_proj(fused * prompts.activation[:, k:k + 1]) + no_mask.view(1, D, 1, 1)
    assert torch.allclose(prompts.dense[:, k], expected, atol=1e-5)
    assert not torch.allclose(prompts.dense[:, 0], prompts.dense[:, 1], atol=1e-3)  # each class its own prompt


def test_without_sparse_positions_only_the_prototype_token_remains():
    enc = _encoder(n_sparse=0)
    prompts = enc(torch.randn(2, D, 5, 7), torch.randn(1, D, 5, 7))
    assert prompts.sparse.shape == (2, 3, 1, D) and prompts.positions.shape == (2, 3, 0)


def test_prototypes_start_orthonormal_and_starting_embeddings_are_checked():
    enc = _encoder(k=3)
    assert torch.allclose(enc.similarity(), torch.eye(3), atol=1e-5)
    assert enc.separation_loss().item() == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(enc.point_embed.detach(), torch.zeros(D))  # no SAM embedding given: zeros
    with pytest.raises(InputError, match="point_embed has 3 values"):
        _encoder(point_embed=torch.zeros(3))


def test_separation_loss_values():
    same = torch.ones(3, 4)
    assert prototype_separation_loss(same).item() == pytest.approx(1.0)
    assert prototype_separation_loss(torch.eye(4)[:3]).item() == pytest.approx(0.0)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert prototype_separation_loss(opposite).item() == pytest.approx(0.0)
    # cosine 0.6 between the two: 0.6 over margin 0, 0.1 over margin 0.5, nothing over margin 0.7
    pair = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    assert prototype_similarity(pair)[0, 1].item() == pytest.approx(0.6)
    assert prototype_separation_loss(pair).item() == pytest.approx(0.6)
    assert prototype_separation_loss(pair, margin=0.5).item() == pytest.approx(0.1)
    assert prototype_separation_loss(pair, margin=0.7).item() == pytest.approx(0.0)
    assert prototype_separation_loss(torch.randn(1, 4)).item() == 0.0  # one class: nothing to separate


def test_separation_loss_falls_as_prototypes_separate():
    torch.manual_seed(0)
    enc = _encoder(k=3)
    with torch.no_grad():  # three nearly identical prototypes
        enc.prototypes.copy_(torch.ones(3, D) + 0.1 * torch.randn(3, D))
    start = enc.separation_loss().item()
    assert start > 0.9
    opt = torch.optim.SGD([enc.prototypes], lr=0.5)
    losses = []
    for _ in range(60):
        loss = enc.separation_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * start
    assert enc.similarity()[~torch.eye(3, dtype=torch.bool)].max().item() < 0.2
