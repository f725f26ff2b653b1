"""Semantic segmentation scores: IoU and Dice per class, mean IoU, voxel accuracy.

Definitions:
- For class c: I = voxels labelled c in both, P = voxels labelled c in the prediction, T = in the
  truth. IoU = I / (P + T - I), Dice = 2 I / (P + T).
- Classes scored: those given in `classes`, else every label present in either volume except the
  background label (0 by default; `background=None` scores every label). Background is left out of
  mIoU by default because it dominates tomograms and would inflate the mean.
- A class absent from both volumes has IoU and Dice None and is left out of the means. When no
  class is left, both volumes agree that nothing is there and mIoU = mean Dice = 1.
- Voxels whose truth label is in `ignore` are left out of every count.
- Boolean masks are labels 0 / 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .overlap import check_same_shape, label_array, overlap_table
from .tables import class_label, make_table

if TYPE_CHECKING:
    from rich.table import Table

    from ..io.volume import Volume


@dataclass
class ClassScores:
    """IoU and Dice of one class, with the voxel counts behind them (None when the class is in neither)."""

    label: int
    iou: float | None
    dice: float | None
    intersection: int
    n_pred: int
    n_truth: int

    def to_dict(self) -> dict[str, Any]:
        return {"iou": self.iou, "dice": self.dice, "intersection": self.intersection,
                "n_pred": self.n_pred, "n_truth": self.n_truth}


@dataclass
class SegmentationScores:
    """Per-class IoU/Dice and their means.

    Attributes:
        per_class: label -> ClassScores, for the classes scored (see the module docstring).
        mean_iou: mean IoU over scored classes with a defined IoU.
        mean_dice: mean Dice over the same classes.
        accuracy: fraction of counted voxels whose labels agree (background included).
        n_voxels: voxels counted (all, less the ignored ones).
        background: the label excluded from the default class list (None: none excluded).
        class_names: label -> name, for display.
    """

    per_class: dict[int, ClassScores]
    mean_iou: float
    mean_dice: float
    accuracy: float
    n_voxels: int
    background: int | None = 0
    class_names: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean_iou": self.mean_iou,
            "mean_dice": self.mean_dice,
            "accuracy": self.accuracy,
            "n_voxels": self.n_voxels,
            "background": self.background,
            "per_class": {str(c): {"name": self.class_names.get(c), **s.to_dict()}
                          for c, s in self.per_class.items()},
        }

    def to_table(self, title: str | None = "Segmentation") -> Table:
        """A rich table: one row per class, then the means."""
        rows: list[list[Any]] = [[class_label(c, self.class_names), s.iou, s.dice, s.n_pred, s.n_truth]
                                 for c, s in self.per_class.items()]
        rows.append(["mean", self.mean_iou, self.mean_dice, None, None])
        bg = "no background label" if self.background is None else f"background {self.background} excluded"
        caption = f"voxel accuracy {self.accuracy:.4f}; {bg}"
        return make_table(title, ["class", "IoU", "Dice", "pred voxels", "truth voxels"], rows, caption=caption)


def _id_list(value: Any, name: str) -> list[int]:
    if value is None:
        return []
    items = [value] if np.isscalar(value) else list(value)
    try:
        return [int(v) for v in items]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be integer label ids, got {value!r}") from exc


def segmentation_scores(pred: np.ndarray | Volume, truth: np.ndarray | Volume,
                        classes: list[int] | None = None, ignore: int | list[int] | None = None,
                        background: int | None = 0, class_names: dict[int, str] | None = None,
                        ) -> SegmentationScores:
    """Score a predicted label map against the true one.

    Args:
        pred: predicted labels, (Z, Y, X) for a volume (any shape works), int, bool or integral
            float; or a `Volume` holding them.
        truth: true labels, same shape.
        classes: the labels to score; default every label present in either, less `background`.
        ignore: truth label(s) whose voxels are left out entirely (e.g. unannotated regions).
        background: the label left out of the default class list and so of mIoU.
        class_names: optional label -> name for display.

    Returns:
        SegmentationScores.
    """
    p = label_array(pred, "prediction")
    t = label_array(truth, "ground truth")
    check_same_shape(pred, truth, p, t)
    p_ids, t_ids, counts = overlap_table(p, t)

    ignored = _id_list(ignore, "ignore")
    if ignored:
        keep = ~np.isin(t_ids, ignored)
        p_ids, t_ids, counts = p_ids[keep], t_ids[keep], counts[keep]
    n_voxels = int(counts.sum())
    agree = int(counts[p_ids == t_ids].sum())
    accuracy = agree / n_voxels if n_voxels else 1.0

    if classes is None:
        present = np.union1d(p_ids, t_ids)
        scored = [int(c) for c in present if background is None or c != background]
    else:
        scored = sorted(set(_id_list(classes, "classes")))

    per_class: dict[int, ClassScores] = {}
    for c in scored:
        inter = int(counts[(p_ids == c) & (t_ids == c)].sum())
        n_p = int(counts[p_ids == c].sum())
        n_t = int(counts[t_ids == c].sum())
        union = n_p + n_t - inter
        iou = inter / union if union else None
        dice = 2 * inter / (n_p + n_t) if n_p + n_t else None
        per_class[c] = ClassScores(c, iou, dice, inter, n_p, n_t)

    ious = [s.iou for s in per_class.values() if s.iou is not None]
    dices = [s.dice for s in per_class.values() if s.dice is not None]
    return SegmentationScores(
        per_class=per_class,
        mean_iou=float(np.mean(ious)) if ious else 1.0,
        mean_dice=float(np.mean(dices)) if dices else 1.0,
        accuracy=float(accuracy),
        n_voxels=n_voxels,
        background=background,
        class_names=dict(class_names or {}),
    )
