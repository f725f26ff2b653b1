"""Metrics: particle picking (P/R/F1, PR curve, AP), segmentation (IoU, Dice, mIoU), instances (matched IoU, P/R@IoU).

Every function takes arrays in z, y, x (coordinates in voxels) and returns a dataclass with
`to_dict()` (JSON-ready) and, for the scores, `to_table()` (a rich table, drawn by `tables`).
Matching lives in `assignment`; the P/R/F1 rules shared by picks and instances in `counts`.
"""

from .counts import precision_recall_f1
from .instances import DEFAULT_IOU_THRESHOLD, InstanceScores, instance_scores
from .picking import (
    PickingConfig,
    PickingCounts,
    PickingScores,
    PrecisionRecallCurve,
    against_truth_class,
    average_precision,
    match_picks,
    precision_recall_curve,
)
from .segmentation import ClassScores, SegmentationScores, segmentation_scores

__all__ = [
    "DEFAULT_IOU_THRESHOLD",
    "ClassScores",
    "InstanceScores",
    "PickingConfig",
    "PickingCounts",
    "PickingScores",
    "PrecisionRecallCurve",
    "SegmentationScores",
    "against_truth_class",
    "average_precision",
    "instance_scores",
    "match_picks",
    "precision_recall_curve",
    "precision_recall_f1",
    "segmentation_scores",
]
