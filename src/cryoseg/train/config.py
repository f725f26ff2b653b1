"""`TrainConfig`: the defaults of every training run, in a light module (no torch) so the CLI can quote them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of `cryoseg.train.fit`.

    Attributes:
        epochs: most passes over the training batches.
        batch_size: samples per batch; `fit` does not batch itself, the caller's `batches(epoch)` reads it (see
            `cryoseg.train.batch_indices`).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without improvement of the validation metric (higher is better;
            the training loss, lower is better, when there is no validation).
        seed: seeds torch at every epoch (from seed and epoch number) and should seed the batches, so a run is
            reproducible and a resumed run continues as the uninterrupted one would.
        clip_grad: largest gradient norm (of all trained parameters together), or None for no clipping.
        lr_schedule: "constant", or "cosine": epoch e trains at lr * (1 + cos(pi * e / epochs)) / 2, so the last
            epochs settle instead of jumping between states (a resume with more epochs stretches the curve).
    """

    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 10
    seed: int = 0
    clip_grad: float | None = 1.0
    lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"TrainConfig.{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"TrainConfig.seed must be a whole number >= 0, got {self.seed!r}")
        if not _finite(self.lr) or self.lr <= 0:
            raise InputError(f"TrainConfig.lr must be a number > 0, got {self.lr!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise InputError(f"TrainConfig.weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.clip_grad is not None and (not _finite(self.clip_grad) or self.clip_grad <= 0):
            raise InputError(f"TrainConfig.clip_grad must be a number > 0 or None, got {self.clip_grad!r}")


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (from 0) under `config.lr_schedule`."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    return config.lr


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
