"""scsam_loss: cross-entropy + soft Dice on the (K+1)-class map, weighted with the alignment and prototype terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cryoseg.errors import InputError
from cryoseg.scsam import ScSAMConfig, ScSAMOutput, scsam_loss, soft_dice_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _output(logits, alignment=0.0, prototype=0.0) -> ScSAMOutput:
    b, c = logits.shape[:2]
    return ScSAMOutput(logits=logits, alignment_loss=torch.tensor(alignment), prototype_loss=torch.tensor(prototype),
                       activation=torch.zeros(b, c - 1, 2, 2), prototype_similarity=torch.eye(c - 1),
                       fusion_weights=None)


def _labels(seed=0, k=2, shape=(2, 8, 12)):
    return torch.randint(0, k + 1, shape, generator=torch.Generator().manual_seed(seed))


def test_perfect_logits_cost_almost_nothing_and_wrong_ones_a_lot():
    cfg = ScSAMConfig(class_names=["a", "b"], alignment_weight=0.0, prototype_weight=0.0)
    labels = _labels()
    perfect = 20.0 * F.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    total, logs = scsam_loss(_output(perfect), labels, cfg)
    assert logs["ce"] < 1e-6 and logs["dice"] < 1e-4 and total.item() < 1e-4
    wrong = 20.0 * F.one_hot((labels + 1) % 3, 3).permute(0, 3, 1, 2).float()
    _, logs = scsam_loss(_output(wrong), labels, cfg)
    assert logs["ce"] > 15 and logs["dice"] > 0.95
    _, logs = scsam_loss(_output(torch.zeros(2, 3, 8, 12)), labels, cfg)  # uniform guess
    assert logs["ce"] == pytest.approx(math.log(3), abs=1e-5)


def test_total_is_the_weighted_sum_of_the_four_terms():
    cfg = ScSAMConfig(class_names=["a", "b"], ce_weight=0.5, dice_weight=2.0, alignment_weight=0.3,
                      prototype_weight=0.7)
    logits = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(1))
    labels = _labels()
    total, logs = scsam_loss(_output(logits, alignment=0.4, prototype=0.25), labels, cfg)
    ce = F.cross_entropy(logits, labels).item()
    dice = soft_dice_loss(logits, labels).item()
    assert logs["ce"] == pytest.approx(ce) and logs["dice"] == pytest.approx(dice)
    assert logs["alignment"] == pytest.approx(0.4) and logs["prototype"] == pytest.approx(0.25)
    expected = 0.5 * ce + 2.0 * dice + 0.3 * 0.4 + 0.7 * 0.25
    assert total.item() == pytest.approx(expected, rel=1e-6) and logs["loss"] == pytest.approx(expected, rel=1e-6)


def test_soft_dice_by_hand():
    # one image, two pixels, two classes: p = softmax = (0.5, 0.5) everywhere; labels (0, 1)
    logits = torch.zeros(1, 2, 1, 2)
    labels = torch.tensor([[[0, 1]]])
    # per class: intersection 0.5, sum p 1, sum onehot 1: dice (2 * 0.5 + 1) / (2 + 1) = 2/3
    assert soft_dice_loss(logits, labels).item() == pytest.approx(1 - 2 / 3)
    assert soft_dice_loss(logits, labels, smooth=0.0).item() == pytest.approx(0.5)
    # a class absent from the labels and (nearly) never predicted costs (nearly) nothing
    absent = torch.tensor([[[20.0, -20.0]], [[-20.0, 20.0]], [[-20.0, -20.0]]]).reshape(1, 3, 1, 2)
    assert soft_dice_loss(absent, labels).item() < 1e-6


def test_logits_are_resampled_to_the_labels_size():
    cfg = ScSAMConfig(class_names=["a", "b"])
    logits = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = _labels(shape=(2, 16, 24))
    total, logs = scsam_loss(_output(logits), labels, cfg)
    up = F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False)
    assert logs["ce"] == pytest.approx(F.cross_entropy(up, labels).item())
    assert logs["dice"] == pytest.approx(soft_dice_loss(up, labels).item())
    total.backward()
    assert logits.grad is not None and logits.grad.abs().sum().item() > 0


@pytest.mark.parametrize("labels, message", [
    (torch.full((2, 8, 12), 3), r"labels must lie in \[0, 2\]"),
    (torch.full((2, 8, 12), -1), r"got \[-1, -1\]"),
    (torch.zeros(2, 8, 12, dtype=torch.int32), "labels must be int64"),
    (torch.zeros(2, 8, 12).float(), "labels must be int64"),
    (torch.zeros(8, 12, dtype=torch.int64), r"labels must be \(B, H, W\)"),
    (torch.zeros(3, 8, 12, dtype=torch.int64), "labels hold 3 images, the logits 2"),
    ([[0]], "must be a torch tensor"),
])
def test_bad_labels_are_refused(labels, message):
    cfg = ScSAMConfig(class_names=["a", "b"])
    with pytest.raises(InputError, match=message):
        scsam_loss(_output(torch.zeros(2, 3, 8, 12)), labels, cfg)


def test_logits_must_match_the_class_count():
    with pytest.raises(InputError, match=r"logits must be \(B, 4, h, w\) for 3 classes"):
        scsam_loss(_output(torch.zeros(2, 3, 8, 12)), _labels(), ScSAMConfig(class_names=["a", "b", "c"]))
