"""`History`: what a training run did, epoch by epoch (no torch, so plots and reports read it lightly)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError


@dataclass
class History:
    """Per-epoch record of `cryoseg.train.fit`; epochs are numbered from 0.

    Attributes:
        train_loss: mean training loss of each epoch (mean over its batches).
        val_metric: validation metric after each epoch (higher is better); empty without validation.
        seconds: wall-clock seconds of each epoch (training and validation).
        train_metrics: means over each epoch's batches of the extra numbers the step function returned.
        best_epoch: the epoch whose state was kept (best validation metric, or lowest loss), -1 before any.
        stopped_early: whether training stopped for lack of improvement before `epochs`.
    """

    train_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    train_metrics: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False

    @property
    def epochs(self) -> int:
        """Epochs done."""
        return len(self.train_loss)

    @property
    def best_value(self) -> float | None:
        """The kept epoch's validation metric (or its loss without validation); None before any epoch."""
        if self.best_epoch < 0:
            return None
        values = self.val_metric if self.val_metric else self.train_loss
        return values[self.best_epoch]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (for report.json and checkpoints)."""
        return {"train_loss": list(self.train_loss), "val_metric": list(self.val_metric),
                "seconds": list(self.seconds), "train_metrics": [dict(m) for m in self.train_metrics],
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of `to_dict`."""
        try:
            return cls(train_loss=[float(v) for v in data["train_loss"]],
                       val_metric=[float(v) for v in data.get("val_metric", [])],
                       seconds=[float(v) for v in data.get("seconds", [])],
                       train_metrics=[{str(k): float(v) for k, v in m.items()} for m in data.get("train_metrics", [])],
                       best_epoch=int(data.get("best_epoch", -1)), stopped_early=bool(data.get("stopped_early", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"not a training history: {exc}") from exc
