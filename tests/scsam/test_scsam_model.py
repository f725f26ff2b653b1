"""The assembled ScSAM head on the tiny random SAM: shapes of every ablation, gradients, the decoder copy, the
positional encoding, class and image independence, saving and loading."""

from __future__ import annotations

import copy

import pytest
import torch

from cryoseg.errors import InputError
from cryoseg.scsam import (
    ScSAMConfig,
    ScSAMHead,
    build_head,
    image_positional_embedding,
    scsam_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SAM_DIM = 16  # the tiny SAM's embedding channels and decoder width


def _inputs(cfg, batch=2, mae_grid=(4, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    sam = torch.randn(batch, cfg.sam_dim, *cfg.grid, generator=gen) if cfg.use_sam else None
    mae = torch.randn(batch, cfg.mae_dim, *mae_grid, generator=gen) if cfg.use_mae else None
    return sam, mae


@pytest.mark.parametrize("use_sam, use_mae", [(True, False), (False, True), (True, True)],
                         ids=["sam-only", "mae-only", "fused"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("grid", [(8, 8), (6, 10)], ids=["square", "non-square"])
def test_output_shapes_of_every_ablation(tiny_sam, make_config, use_sam, use_mae, k, grid):
    cfg = make_config(k, use_sam=use_sam, use_mae=use_mae, grid=grid)
    head = build_head(cfg, tiny_sam)
    out = head(*_inputs(cfg, batch=2, mae_grid=(5, 3)))
    h, w = grid
    assert out.logits.shape == (2, k + 1, 4 * h, 4 * w)
    assert torch.equal(out.logits[:, 0], torch.zeros(2, 4 * h, 4 * w))  # background channel fixed at 0
    assert out.logits[:, 1:].abs().max().item() > 0
    assert out.activation.shape == (2, k, h, w)
    assert out.prototype_similarity.shape == (k, k)
    assert out.labels().shape == (2, 4 * h, 4 * w) and out.labels().dtype == torch.int64
    assert out.alignment_loss.shape == () and out.prototype_loss.shape == ()
    if use_sam and use_mae:
        assert out.alignment_loss.item() > 0 and out.fusion_weights.shape == (2, 2, h, w)
    else:
        assert out.alignment_loss.item() == 0 and out.fusion_weights is None
    assert (head.fafm.sam_proj is not None) == use_sam and (head.fafm.mae_proj is not None) == use_mae


def test_gradients_reach_fafm_prompts_and_decoder(tiny_sam, make_config):
    cfg = make_config(3)
    head = build_head(cfg, tiny_sam)
    out = head(*_inputs(cfg))
    loss, _ = scsam_loss(out, torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(0)), cfg)
    loss.backward()
    # SAM's multimask hypernetworks and IoU head are unused with multimask_output=False: they alone get no gradient
    unused = ("mask_decoder.output_hypernetworks_mlps.1.", "mask_decoder.output_hypernetworks_mlps.2.",
              "mask_decoder.output_hypernetworks_mlps.3.", "mask_decoder.iou_prediction_head.")
    dead = [name for name, p in head.named_parameters()
            if not name.startswith(unused) and (p.grad is None or p.grad.abs().sum().item() == 0)]
    assert dead == []
    for name in ("fafm.sam_proj.weight", "fafm.mae_proj.weight", "fafm.recalibration.0.weight",
                 "prompts.prototypes", "prompts.dense_proj.weight", "prompts.position_token.weight",
                 "prompts.prototype_token.weight", "prompts.no_mask_embed", "prompts.point_embed",
                 "mask_decoder.transformer.layers.0.self_attn.q_proj.weight", "mask_decoder.upscale_conv1.weight",
                 "mask_decoder.output_hypernetworks_mlps.0.proj_in.weight"):
        assert dict(head.named_parameters())[name].grad.abs().sum().item() > 0, name
    assert not head.image_pe.requires_grad and "image_pe" not in dict(head.named_parameters())


def test_the_decoder_is_a_copy_and_the_sam_model_is_untouched(make_config):
    from cryoseg.models.tiny import build_tiny_model

    sam_model = build_tiny_model("tiny-sam").requires_grad_(False)  # a frozen SamModel, as the encoders are
    before = copy.deepcopy(sam_model.state_dict())
    cfg = make_config(2)
    head = build_head(cfg, sam_model)
    assert head.mask_decoder is not sam_model.mask_decoder
    start = head.mask_decoder.state_dict()
    for key, value in sam_model.mask_decoder.state_dict().items():
        assert torch.equal(start[key], value), key  # initialised from SAM's decoder
    assert all(p.requires_grad for p in head.mask_decoder.parameters())  # the copy trains
    # the class prompts start from SAM's no-mask embedding and positive-point embedding
    assert torch.equal(head.prompts.no_mask_embed.detach(), sam_model.prompt_encoder.no_mask_embed.weight[0])
    assert torch.equal(head.prompts.point_embed.detach(), sam_model.prompt_encoder.point_embed[1].weight[0])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    labels = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    for _ in range(3):
        loss, _ = scsam_loss(head(*_inputs(cfg)), labels, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = sam_model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    key = "transformer.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(head.mask_decoder.state_dict()[key], sam_model.mask_decoder.state_dict()[key])


def test_positional_encoding_is_sams_own(tiny_sam):
    square = image_positional_embedding(tiny_sam, (8, 8))
    assert torch.allclose(square, tiny_sam.get_image_wide_positional_embeddings(), atol=1e-6)
    wide = image_positional_embedding(tiny_sam, (6, 10))
    assert wide.shape == (1, SAM_DIM, 6, 10)
    for y, x in ((0, 0), (5, 9), (2, 7)):  # SAM's encoding of the cell centre, coordinates (x, y) in [0, 1]
        centre = torch.tensor([[[[(x + 0.5) / 10, (y + 0.5) / 6]]]])
        with torch.no_grad():
            expected = tiny_sam.shared_image_embedding(centre)[0, 0, 0]
        assert torch.allclose(wide[0, :, y, x], expected, atol=1e-6)


def test_classes_and_images_are_decoded_independently(tiny_sam, make_config):
    cfg = make_config(3)
    head = build_head(cfg, tiny_sam).eval()
    sam, mae = _inputs(cfg, batch=3)
    with torch.no_grad():
        out = head(sam, mae)
        alone = head(sam[1:2], mae[1:2])  # image 1 on its own: the same as within the batch
        assert torch.allclose(alone.logits[0], out.logits[1], atol=1e-5)
        head.prompts.prototypes[1] += 0.5 * torch.randn(SAM_DIM, generator=torch.Generator().manual_seed(3))
        moved = head(sam, mae)
    # only class 2 (prototype 1) changes: each class gets its own decoder row
    assert torch.allclose(moved.logits[:, [0, 1, 3]], out.logits[:, [0, 1, 3]], atol=1e-5)
    assert (moved.logits[:, 2] - out.logits[:, 2]).abs().max().item() > 1e-3


def test_a_saved_head_loads_into_a_head_built_from_other_weights(tiny_sam, make_config):
    from cryoseg.models.tiny import build_tiny_model

    cfg = make_config(2, grid=(6, 10))
    head = build_head(cfg, tiny_sam).eval()
    other = build_head(ScSAMConfig.from_dict(cfg.to_dict()), build_tiny_model("tiny-sam", seed=5)).eval()
    inputs = _inputs(cfg)
    with torch.no_grad():
        assert not torch.allclose(head(*inputs).logits, other(*inputs).logits, atol=1e-3)
        other.load_state_dict(head.state_dict(), strict=True)  # the positional encoding travels in the state
        assert torch.allclose(head(*inputs).logits, other(*inputs).logits, atol=1e-6)


def test_build_head_refuses_mismatched_models(tiny_sam, make_config):
    base = make_config(2).to_dict()
    with pytest.raises(InputError, match="embed_dim 32 differs from the SAM decoder's width 16"):
        build_head(ScSAMConfig.from_dict({**base, "embed_dim": 32}), tiny_sam)
    with pytest.raises(InputError, match="sam_dim 256 differs from the SAM model's embedding channels 16"):
        build_head(ScSAMConfig.from_dict({**base, "sam_dim": 256}), tiny_sam)
    # MAE only: SAM's embedding width does not matter, only the decoder's
    build_head(ScSAMConfig.from_dict({**base, "sam_dim": 256, "use_sam": False}), tiny_sam)
    with pytest.raises(InputError, match="needs a transformers SamModel"):
        build_head(make_config(2), torch.nn.Linear(2, 2))
    with pytest.raises(InputError, match="image_pe must be"):
        ScSAMHead(make_config(2), copy.deepcopy(tiny_sam.mask_decoder), torch.zeros(1, SAM_DIM, 4, 4))


def test_forward_refuses_a_missing_or_misshapen_embedding(tiny_sam, make_config):
    cfg = make_config(2)
    head = build_head(cfg, tiny_sam)
    sam, mae = _inputs(cfg)
    with pytest.raises(InputError, match="no MAE embedding"):
        head(sam, None)
    with pytest.raises(InputError, match="differs from the config's grid"):
        head(sam[..., :4], mae)
