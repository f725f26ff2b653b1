"""The ScSAM training loss: cross-entropy + soft Dice on the (K+1)-class map, plus the FAFM alignment loss and the
prototype separation loss, weighted as the config says.

Choices that are ours: logits are resampled (bilinear, align_corners=False) to the labels' size, not the labels
to the logits', so full-resolution labels lose nothing; the soft Dice is computed per class over the whole batch
(sums over B, H, W) with smoothing 1, then averaged over all K + 1 classes, so a class absent from a batch and
not predicted costs nothing, while one predicted where there is none is penalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError
from .config import ScSAMConfig
from .model import ScSAMOutput

DICE_SMOOTH = 1.0


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """1 - mean over classes of the soft Dice between softmax(logits) and the one-hot labels.

    Args:
        logits: (B, C, H, W).
        labels: (B, H, W) int64 in [0, C).

    Returns:
        A scalar tensor in [0, 1).
    """
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + smooth) / (total + smooth)).mean()


def _check_labels(labels: torch.Tensor, logits: torch.Tensor, num_classes: int) -> None:
    if not isinstance(labels, torch.Tensor):
        raise InputError(f"labels must be a torch tensor, got {type(labels).__name__}")
    if labels.dim() != 3:
        raise InputError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if labels.dtype != torch.int64:
        raise InputError(f"labels must be int64, got {labels.dtype}")
    if labels.shape[0] != logits.shape[0]:
        raise InputError(f"labels hold {labels.shape[0]} images, the logits {logits.shape[0]}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > num_classes):
        raise InputError(f"labels must lie in [0, {num_classes}] (0 background, 1..{num_classes} the classes), "
                         f"got [{int(labels.min())}, {int(labels.max())}]")


def scsam_loss(output: ScSAMOutput, labels: torch.Tensor, config: ScSAMConfig
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted training loss of one batch.

    Args:
        output: the head's output; logits (B, K+1, h4, w4).
        labels: (B, H, W) int64 labels in [0, K] at any size (the logits are resampled to it).
        config: the loss weights (ce_weight, dice_weight, alignment_weight, prototype_weight) and K.

    Returns:
        (total, logs): the scalar loss tensor to backpropagate, and each term as a float ("loss", "ce", "dice",
        "alignment", "prototype").
    """
    logits = output.logits
    k = config.num_classes
    if logits.dim() != 4 or logits.shape[1] != k + 1:
        raise InputError(f"logits must be (B, {k + 1}, h, w) for {k} classes, got {tuple(logits.shape)}")
    _check_labels(labels, logits, k)
    if tuple(logits.shape[-2:]) != tuple(labels.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(labels.shape[-2:]), mode="bilinear", align_corners=False)
    labels = labels.to(logits.device)
    ce = F.cross_entropy(logits, labels)
    dice = soft_dice_loss(logits, labels)
    total = (config.ce_weight * ce + config.dice_weight * dice + config.alignment_weight * output.alignment_loss
             + config.prototype_weight * output.prototype_loss)
    logs = {"loss": float(total.detach()), "ce": float(ce.detach()), "dice": float(dice.detach()),
            "alignment": float(output.alignment_loss.detach()), "prototype": float(output.prototype_loss.detach())}
    return total, logs
