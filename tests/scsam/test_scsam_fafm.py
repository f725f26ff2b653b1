"""FAFM: projection, resampling, the alignment loss and the spatial recalibration."""

from __future__ import annotations

import pytest
import torch

from cryoseg.errors import InputError
from cryoseg.scsam import FAFM, ScSAMConfig, cosine_alignment_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(use_sam=True, use_mae=True, sam_dim=16, mae_dim=16, grid=(6, 9)) -> ScSAMConfig:
    return ScSAMConfig(class_names=["a"], use_sam=use_sam, use_mae=use_mae, sam_dim=sam_dim, mae_dim=mae_dim,
                       embed_dim=16, grid=grid)


def test_alignment_loss_is_zero_only_for_aligned_directions():
    torch.manual_seed(0)
    a = torch.randn(2, 8, 5, 7)
    assert float(cosine_alignment_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine_alignment_loss(a, 3.0 * a)) == pytest.approx(0.0, abs=1e-6)  # directions, not scale
    assert float(cosine_alignment_loss(a, -a)) == pytest.approx(2.0, abs=1e-6)
    b = a.clone()
    b[:, :, 0, 0] = -b[:, :, 0, 0]  # one position of 2 * 35 flipped: loss 2 / 35
    assert float(cosine_alignment_loss(a, b)) == pytest.approx(2.0 / 35, abs=1e-6)
    assert float(cosine_alignment_loss(a, torch.randn(2, 8, 5, 7))) > 0.5
    with pytest.raises(InputError, match="one shape"):
        cosine_alignment_loss(a, a[..., :3])


def test_module_alignment_is_zero_for_identical_projections_and_positive_otherwise():
    torch.manual_seed(0)
    fafm = FAFM(_config())
    with torch.no_grad():  # the same projection on both sides
        fafm.mae_proj.weight.copy_(fafm.sam_proj.weight + 0.0)
        fafm.mae_proj.bias.copy_(fafm.sam_proj.bias)
    x = torch.randn(2, 16, 6, 9)
    assert fafm(x, x.clone()).alignment_loss.item() == pytest.approx(0.0, abs=1e-6)
    out = fafm(x, torch.randn(2, 16, 6, 9))
    assert out.alignment_loss.item() > 0.5
    p_sam, p_mae = fafm.project(x, x)
    assert torch.allclose(p_sam, p_mae)


def test_sam_projection_starts_as_identity_and_single_encoder_is_projection_only():
    torch.manual_seed(0)
    sam = torch.randn(3, 16, 6, 9)
    out = FAFM(_config(use_mae=False))(sam, None)
    assert torch.equal(out.fused, sam)  # the pretrained decoder first sees SAM's own embedding
    assert float(out.alignment_loss) == 0.0 and out.weights is None

    fafm = FAFM(_config(use_sam=False, mae_dim=32))
    assert fafm.recalibration is None and fafm.sam_proj is None
    mae = torch.randn(3, 32, 4, 4)
    out = fafm(None, mae)
    assert out.fused.shape == (3, 16, 6, 9)
    assert float(out.alignment_loss) == 0.0 and out.weights is None
    # projection then bilinear resampling, nothing else
    expected = torch.nn.functional.interpolate(fafm.mae_proj(mae), size=(6, 9), mode="bilinear",
                                               align_corners=False)
    assert torch.allclose(out.fused, expected, atol=1e-6)


def test_projection_and_resampling_commute():
    # why projecting on MAE's small grid first is allowed: 1x1 conv and bilinear resampling commute
    torch.manual_seed(0)
    fafm = FAFM(_config(use_sam=False, mae_dim=32))
    mae = torch.randn(2, 32, 4, 5)
    _, projected_first = fafm.project(None, mae)
    resampled_first = fafm.mae_proj(torch.nn.functional.interpolate(mae, size=(6, 9), mode="bilinear",
                                                                    align_corners=False))
    assert torch.allclose(projected_first, resampled_first, atol=1e-5)


def test_recalibration_weights_the_sources_per_position():
    torch.manual_seed(0)
    fafm = FAFM(_config(mae_dim=32))
    sam, mae = torch.randn(2, 16, 6, 9), torch.randn(2, 32, 3, 3)
    out = fafm(sam, mae)
    assert out.fused.shape == (2, 16, 6, 9) and out.weights.shape == (2, 2, 6, 9)
    assert torch.allclose(out.weights.sum(dim=1), torch.ones(2, 6, 9), atol=1e-6)
    assert out.weights.std().item() > 0  # the weights vary with the position
    p_sam, p_mae = fafm.project(sam, mae)
    expected = out.weights[:, :1] * p_sam + out.weights[:, 1:] * p_mae
    assert torch.allclose(out.fused, expected, atol=1e-6)
    assert not torch.allclose(out.fused, p_sam, atol=1e-3)
    # a recalibration that always picks one source gives exactly that source
    last = fafm.recalibration[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-30.0, 30.0]))
    assert torch.allclose(fafm(sam, mae).fused, p_mae, atol=1e-5)
    with torch.no_grad():
        last.bias.copy_(torch.tensor([30.0, -30.0]))
    assert torch.allclose(fafm(sam, mae).fused, p_sam, atol=1e-5)


@pytest.mark.parametrize("sam, mae, message", [
    (None, torch.zeros(1, 16, 4, 4), "no SAM embedding was given"),
    (torch.zeros(1, 16, 6, 9), None, "no MAE embedding was given"),
    (torch.zeros(1, 8, 6, 9), torch.zeros(1, 16, 4, 4), "SAM embedding must be (B, 16, h, w)"),
    (torch.zeros(16, 6, 9), torch.zeros(1, 16, 4, 4), "SAM embedding must be (B, 16, h, w)"),
    (torch.zeros(1, 16, 6, 9), torch.zeros(1, 16, 4, 4, dtype=torch.int64), "must be floating point"),
    (torch.zeros(1, 16, 8, 8), torch.zeros(1, 16, 4, 4), "differs from the config's grid (6, 9)"),
    (torch.zeros(2, 16, 6, 9), torch.zeros(1, 16, 4, 4), "batches differ"),
    (torch.zeros(1, 16, 6, 9), [[0.0]], "must be a torch tensor"),
])
def test_bad_inputs_are_refused(sam, mae, message):
    with pytest.raises(InputError) as info:
        FAFM(_config())(sam, mae)
    assert message in str(info.value)


def test_an_unused_encoder_must_not_be_given():
    with pytest.raises(InputError, match="configured without the MAE encoder"):
        FAFM(_config(use_mae=False))(torch.zeros(1, 16, 6, 9), torch.zeros(1, 16, 4, 4))
