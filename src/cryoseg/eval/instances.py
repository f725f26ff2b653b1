"""Instance segmentation scores: matched-instance IoU and precision/recall/F1 at an IoU threshold.

Definitions (label 0 is background; every other id is one instance):
- IoU of a predicted and a true instance = shared voxels / voxels in either. All IoUs come from one
  sparse overlap table (one bincount pass), never from per-instance masks.
- Matched-instance IoU: the one-to-one matching of overlapping instances with the largest total IoU;
  `mean_matched_iou` is the mean IoU of its pairs.
- At `iou_threshold` (default 0.5, inclusive): TP = size of the largest one-to-one matching among
  pairs with IoU >= threshold; FP = predicted instances left over, FN = true instances left over.
  Above 0.5 each instance has at most one such partner, so the matching is unique.
- Empty inputs follow the picking rules: precision/recall are 1 only when both sides are empty,
  0 when only one is; F1 = 0 when P + R = 0; mean IoUs are None when nothing is matched.
- `panoptic_quality` = mean IoU of the TP pairs x F1 (Kirillov et al. 2019).
- `foreground_iou` / `foreground_dice`: semantic overlap of "any instance" in both (1 when both
  volumes are all background), from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from .assignment import max_cardinality_min_cost_matching, max_weight_matching
from .counts import MatchCounts, precision_recall_f1
from .overlap import check_same_shape, label_array, overlap_table
from .tables import make_table

if TYPE_CHECKING:
    from rich.table import Table

    from ..io.volume import Volume

DEFAULT_IOU_THRESHOLD = 0.5


@dataclass
class InstanceScores(MatchCounts):
    """Instance-level scores; see the module docstring for the definitions.

    The counts (inherited) are those at `iou_threshold`. The arrays (repr hidden, not in `to_dict`) list
    the TP pairs at the threshold: predicted id, true id and their IoU, each (K,).
    """

    iou_threshold: float
    n_matched: int
    mean_matched_iou: float | None
    mean_tp_iou: float | None
    panoptic_quality: float
    foreground_iou: float
    foreground_dice: float
    tp_pred_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    tp_truth_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    tp_ious: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        keys = ("n_pred", "n_truth", "iou_threshold", "tp", "fp", "fn", "precision", "recall", "f1",
                "n_matched", "mean_matched_iou", "mean_tp_iou", "panoptic_quality", "foreground_iou",
                "foreground_dice")
        return {k: getattr(self, k) for k in keys}

    def to_table(self, title: str | None = "Instances") -> Table:
        """A rich table: one row of counts and rates at the threshold, and the overlap scores."""
        columns = ["pred", "truth", "TP", "FP", "FN", f"P@{self.iou_threshold:g}", f"R@{self.iou_threshold:g}",
                   f"F1@{self.iou_threshold:g}", "match IoU", "PQ", "fg IoU"]
        row = [self.n_pred, self.n_truth, self.tp, self.fp, self.fn, self.precision, self.recall, self.f1,
               self.mean_matched_iou, self.panoptic_quality, self.foreground_iou]
        caption = f"matched IoU: mean over {self.n_matched} optimally matched pairs (max total IoU)"
        return make_table(title, columns, [row], caption=caption)


def instance_scores(pred_instances: np.ndarray | Volume, true_instances: np.ndarray | Volume,
                    iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> InstanceScores:
    """Score predicted instances against true ones.

    Args:
        pred_instances: (Z, Y, X) int instance ids (0 = background), or a `Volume`; any shape works.
        true_instances: same shape and meaning for the ground truth.
        iou_threshold: IoU at or above which a matched pair counts as a true positive, in (0, 1].

    Returns:
        InstanceScores.
    """
    thr = float(iou_threshold)
    if not (0 < thr <= 1):
        raise InputError(f"IoU threshold must be in (0, 1], got {iou_threshold!r}")
    p = label_array(pred_instances, "predicted instances")
    t = label_array(true_instances, "true instances")
    check_same_shape(pred_instances, true_instances, p, t)
    p_ids, t_ids, counts = overlap_table(p, t, "predicted instances", "true instances")

    pred_labels, p_idx = np.unique(p_ids, return_inverse=True)
    true_labels, t_idx = np.unique(t_ids, return_inverse=True)
    p_size = np.bincount(p_idx, weights=counts, minlength=pred_labels.size)
    t_size = np.bincount(t_idx, weights=counts, minlength=true_labels.size)
    fg = (p_ids != 0) & (t_ids != 0)
    rows, cols, inter = p_idx[fg], t_idx[fg], counts[fg].astype(np.float64)
    iou = inter / (p_size[rows] + t_size[cols] - inter)
    n_pred = int(np.count_nonzero(pred_labels))
    n_truth = int(np.count_nonzero(true_labels))

    fg_inter = float(counts[fg].sum())
    fg_pred = float(counts[p_ids != 0].sum())
    fg_true = float(counts[t_ids != 0].sum())
    fg_union = fg_pred + fg_true - fg_inter
    fg_iou = fg_inter / fg_union if fg_union else 1.0
    fg_dice = 2 * fg_inter / (fg_pred + fg_true) if fg_pred + fg_true else 1.0

    mr, mc = max_weight_matching(rows, cols, iou, pred_labels.size, true_labels.size)
    matched_iou = _pair_values(rows, cols, iou, mr, mc)

    ok = iou >= thr
    tr, tc = max_cardinality_min_cost_matching(rows[ok], cols[ok], 1.0 - iou[ok], pred_labels.size,
                                               true_labels.size)
    tp_iou = _pair_values(rows, cols, iou, tr, tc)
    tp = int(tr.size)
    precision, recall, f1 = precision_recall_f1(tp, n_pred, n_truth)
    mean_tp = float(tp_iou.mean()) if tp else None
    return InstanceScores(
        n_pred=n_pred, n_truth=n_truth, iou_threshold=thr, tp=tp, fp=n_pred - tp, fn=n_truth - tp,
        precision=precision, recall=recall, f1=f1, n_matched=int(mr.size),
        mean_matched_iou=float(matched_iou.mean()) if mr.size else None,
        mean_tp_iou=mean_tp, panoptic_quality=float((mean_tp or 0.0) * f1) if n_pred or n_truth else 1.0,
        foreground_iou=float(fg_iou), foreground_dice=float(fg_dice),
        tp_pred_ids=pred_labels[tr], tp_truth_ids=true_labels[tc], tp_ious=tp_iou,
    )


def _pair_values(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, mr: np.ndarray,
                 mc: np.ndarray) -> np.ndarray:
    """values[k] for the pairs (mr, mc), looked up among the (rows, cols) pairs."""
    if mr.size == 0:
        return np.zeros(0)
    lookup = dict(zip(zip(rows.tolist(), cols.tolist()), values.tolist()))
    return np.array([lookup[(r, c)] for r, c in zip(mr.tolist(), mc.tolist())])
