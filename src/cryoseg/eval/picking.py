"""Particle-picking scores: P/R/F1 of the one-to-one matching within a distance tolerance, PR curve and AP.

Definitions (used everywhere in this module):
- A prediction and a true particle may match when their centres lie within `tolerance` of each other
  (Euclidean, in voxels, or in Å using the per-axis voxel size so anisotropic voxels are handled).
- `match_picks` uses the *largest* one-to-one matching; among equally large ones, the one with the
  smallest summed distance (`assignment.match_points`). TP = matched pairs, FP = unmatched
  predictions, FN = unmatched truths.
- Empty inputs never give NaN (the rules in `counts`): a score is 1 only when nothing is wrong.
- The PR curve ranks predictions by score. At threshold s, TP(s) is the size of the largest
  one-to-one matching between the predictions with score >= s and the truths, so the last point of
  the curve equals `match_picks` on all predictions (unlike the greedy matching of VOC/COCO, which
  can miss matches).
- Average precision is the area under the interpolated PR curve, the "all points" rule of PASCAL VOC
  2010+ (also COCO's rule, without its 101-point sampling):
  AP = sum_k (R_k - R_{k-1}) * max_{j >= k} P_j, with R_0 = 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..io.particles import Particles
from .assignment import match_points, pairs_within, prefix_matching_sizes
from .counts import MatchCounts, precision_recall_f1
from .tables import class_label, make_table

if TYPE_CHECKING:
    from rich.table import Table

logger = logging.getLogger(__name__)

_UNITS = {"voxel": "voxel", "voxels": "voxel", "px": "voxel",
          "angstrom": "angstrom", "angstroms": "angstrom", "a": "angstrom", "å": "angstrom"}


@dataclass(frozen=True)
class PickingConfig:
    """Defaults for picking evaluation.

    Attributes:
        tolerance: largest centre distance at which a pick still counts as found. 5 voxels: about
            half the radius of a ribosome at 10 Å/voxel (the simulator's default voxel size), in
            line with the common "half a particle radius" rule. Set it to half your particle's
            radius for other sizes.
        tolerance_unit: "voxel" or "angstrom".
    """

    tolerance: float = 5.0
    tolerance_unit: str = "voxel"


_DEFAULTS = PickingConfig()


@dataclass
class PickingCounts(MatchCounts):
    """Counts and rates for one set of picks (all classes together, or one class).

    `mean_distance` is the mean centre distance of matched pairs in the tolerance unit (None if no
    match); `average_precision` is None when the predictions carry no scores.
    """

    mean_distance: float | None = None
    average_precision: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("n_pred", "n_truth", "tp", "fp", "fn", "precision", "recall",
                                              "f1", "mean_distance", "average_precision")}


@dataclass
class PickingScores(PickingCounts):
    """Picking scores: overall (class-agnostic matching) in the inherited fields, plus per class.

    Attributes:
        per_class: class id -> scores from matching within that class only. Filled only when both
            predictions and truths carry classes; the classes are those present in either.
        class_names: class id -> name, where known.
        tolerance, tolerance_unit: the matching tolerance used.
        pred_index, truth_index: (K,) int, the overall matched pairs (indices into pred and truth).
        distances: (K,) float, their centre distances in the tolerance unit.
    """

    per_class: dict[int, PickingCounts] = field(default_factory=dict)
    class_names: dict[int, str] = field(default_factory=dict)
    tolerance: float = _DEFAULTS.tolerance
    tolerance_unit: str = _DEFAULTS.tolerance_unit
    pred_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    truth_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the matched index arrays are left out; they can be long)."""
        out = super().to_dict()
        out["tolerance"] = self.tolerance
        out["tolerance_unit"] = self.tolerance_unit
        out["per_class"] = {
            str(c): {"name": self.class_names.get(c), **s.to_dict()} for c, s in self.per_class.items()
        }
        return out

    def to_table(self, title: str | None = "Picking") -> Table:
        """A rich table: one row for all picks, then one per class."""
        show_ap = self.average_precision is not None
        columns = ["class", "pred", "truth", "TP", "FP", "FN", "P", "R", "F1", "dist"]
        if show_ap:
            columns.append("AP")

        def row(name: str, s: PickingCounts) -> list[Any]:
            values: list[Any] = [name, s.n_pred, s.n_truth, s.tp, s.fp, s.fn, s.precision, s.recall, s.f1,
                                 s.mean_distance]
            return values + [s.average_precision] if show_ap else values

        rows = [row("all", self)] + [row(class_label(c, self.class_names), s) for c, s in self.per_class.items()]
        unit = "Å" if self.tolerance_unit == "angstrom" else "voxels"
        caption = f"tolerance {self.tolerance:g} {unit}; per-class rows match within each class"
        return make_table(title, columns, rows, caption=caption)


@dataclass
class PrecisionRecallCurve:
    """Precision and recall of the picks with score >= each distinct score.

    Attributes:
        precision, recall, thresholds: (T,) float arrays, one entry per distinct score, ordered by
            decreasing threshold. Empty when there are no predictions; recall is 0 throughout when
            there are no truths.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def _unit(tolerance_unit: str) -> str:
    unit = _UNITS.get(str(tolerance_unit).strip().lower())
    if unit is None:
        raise InputError(f"tolerance unit must be 'voxel' or 'angstrom', got {tolerance_unit!r}")
    return unit


def _scaled_coords(pred: Particles, truth: Particles, tolerance: float, voxel_size: Any,
                   tolerance_unit: str) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Check inputs; return coordinates in the tolerance's unit (z, y, x), the tolerance and its unit."""
    for name, value in (("predictions", pred), ("ground truth", truth)):
        if not isinstance(value, Particles):
            raise InputError(f"{name} must be a Particles table, got {type(value).__name__}")
    tol = float(tolerance)
    if not np.isfinite(tol) or tol < 0:
        raise InputError(f"picking tolerance must be a finite number >= 0, got {tolerance!r}")
    unit = _unit(tolerance_unit)
    if unit == "voxel":
        return pred.coords, truth.coords, tol, unit
    if voxel_size is None:
        raise InputError("a tolerance in Å needs the voxel size (pass voxel_size / --voxel-size or --tomogram)")
    try:
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    except (ValueError, TypeError) as exc:
        raise InputError(f"voxel size must be one number or (z, y, x) in Å, got {voxel_size!r}") from exc
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise InputError(f"voxel size must be positive and finite, got {tuple(vs)} Å")
    return pred.coords * vs, truth.coords * vs, tol, unit


def _counts(p: np.ndarray, t: np.ndarray, tol: float) -> tuple[PickingCounts, np.ndarray, np.ndarray, np.ndarray]:
    """Scores of predictions `p` (N, 3) against truths `t` (M, 3), and the matched pairs: pred index, truth
    index, distance, each (K,)."""
    mr, mc, d = match_points(p, t, tol)
    tp = int(mr.size)
    precision, recall, f1 = precision_recall_f1(tp, len(p), len(t))
    counts = PickingCounts(len(p), len(t), tp, len(p) - tp, len(t) - tp, precision, recall, f1,
                           float(d.mean()) if tp else None)
    return counts, mr, mc, d


def match_picks(pred: Particles, truth: Particles, tolerance: float = _DEFAULTS.tolerance,
                voxel_size: float | tuple[float, float, float] | None = None,
                tolerance_unit: str = _DEFAULTS.tolerance_unit) -> PickingScores:
    """Score predicted particle centres against true ones by optimal one-to-one matching.

    Args:
        pred: predicted picks; `coords` (N, 3) z, y, x in voxels; `classes` and `scores` optional.
        truth: true particles; `coords` (M, 3) z, y, x in voxels; `classes` optional.
        tolerance: largest centre distance of a match, in `tolerance_unit`.
        voxel_size: Å per voxel, one number or (z, y, x); needed only when the unit is "angstrom".
        tolerance_unit: "voxel" or "angstrom".

    Returns:
        PickingScores: overall scores from class-agnostic matching; per-class scores (matching within
        each class) when both inputs carry classes; AP when the predictions carry scores.
    """
    p, t, tol, unit = _scaled_coords(pred, truth, tolerance, voxel_size, tolerance_unit)
    overall, mr, mc, dist = _counts(p, t, tol)
    if pred.scores is not None:
        overall.average_precision = _ap_from_scaled(p, pred.scores, t, tol)

    per_class: dict[int, PickingCounts] = {}
    if pred.classes is not None and truth.classes is not None:
        for c in np.union1d(pred.classes, truth.classes).tolist():
            in_p, in_t = pred.classes == c, truth.classes == c
            counts = _counts(p[in_p], t[in_t], tol)[0]
            if pred.scores is not None:
                counts.average_precision = _ap_from_scaled(p[in_p], pred.scores[in_p], t[in_t], tol)
            per_class[int(c)] = counts
    elif pred.classes is not None or truth.classes is not None:
        logger.info("only one of the two pick sets has classes; reporting class-agnostic scores only")

    names = {**pred.class_names, **truth.class_names}
    return PickingScores(**overall.to_dict(), per_class=per_class, class_names=names, tolerance=tol,
                         tolerance_unit=unit, pred_index=mr, truth_index=mc, distances=dist)


def _curve_from_scaled(p: np.ndarray, scores: np.ndarray, t: np.ndarray, tol: float) -> PrecisionRecallCurve:
    if len(p) == 0:
        return PrecisionRecallCurve(np.zeros(0), np.zeros(0), np.zeros(0))
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise InputError("pick scores contain NaN or Inf")
    order = np.argsort(-scores, kind="stable")
    rows, cols, dist = pairs_within(p, t, tol)
    tp = prefix_matching_sizes(order, rows, cols, dist, len(p), len(t))
    sorted_scores = scores[order]
    # One point per distinct score: the last prediction of each run of tied scores.
    last = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    n = last + 1
    precision = tp[last] / n
    recall = tp[last] / len(t) if len(t) else np.zeros(last.size)
    return PrecisionRecallCurve(precision.astype(np.float64), recall.astype(np.float64), sorted_scores[last])


def _ap_from_curve(curve: PrecisionRecallCurve, n_pred: int, n_truth: int) -> float:
    if n_truth == 0 or n_pred == 0:
        return 1.0 if n_truth == 0 and n_pred == 0 else 0.0
    envelope = np.maximum.accumulate(curve.precision[::-1])[::-1]
    steps = np.diff(np.concatenate(([0.0], curve.recall)))
    return float(np.sum(steps * envelope))


def _ap_from_scaled(p: np.ndarray, scores: np.ndarray, t: np.ndarray, tol: float) -> float:
    return _ap_from_curve(_curve_from_scaled(p, scores, t, tol), len(p), len(t))


def _require_scores(pred: Particles) -> np.ndarray:
    if pred.scores is None:
        raise InputError("predictions have no scores; a precision-recall curve needs a score per pick")
    return pred.scores


def precision_recall_curve(pred: Particles, truth: Particles, tolerance: float = _DEFAULTS.tolerance,
                           voxel_size: float | tuple[float, float, float] | None = None,
                           tolerance_unit: str = _DEFAULTS.tolerance_unit) -> PrecisionRecallCurve:
    """Precision and recall of the picks with score >= each distinct score.

    Args: as `match_picks`; `pred.scores` (N,) is required (higher is more confident). Classes are
        ignored (call it per class on `Particles.select_class` for per-class curves).

    Returns:
        PrecisionRecallCurve: (T,) precision, recall and thresholds, ordered by decreasing threshold,
        one entry per distinct score. Empty arrays when there are no predictions. Recall is 0
        throughout when there are no truths.
    """
    scores = _require_scores(pred)
    p, t, tol, _ = _scaled_coords(pred, truth, tolerance, voxel_size, tolerance_unit)
    return _curve_from_scaled(p, scores, t, tol)


def average_precision(pred: Particles, truth: Particles, tolerance: float = _DEFAULTS.tolerance,
                      voxel_size: float | tuple[float, float, float] | None = None,
                      tolerance_unit: str = _DEFAULTS.tolerance_unit) -> float:
    """Area under the interpolated PR curve (VOC 2010+ "all points" rule; see the module docstring).

    Args: as `precision_recall_curve`.

    Returns:
        AP in [0, 1]. 1.0 when there are neither predictions nor truths; 0.0 when only one side is empty.
    """
    scores = _require_scores(pred)
    p, t, tol, _ = _scaled_coords(pred, truth, tolerance, voxel_size, tolerance_unit)
    return _ap_from_scaled(p, scores, t, tol)


def against_truth_class(pred: Particles, truth: Particles, truth_class: int | str) -> tuple[Particles, Particles]:
    """Prepare the picks of a single-kind picker for scoring against one class of a multi-class ground truth.

    Args:
        pred: the picks; their own class ids (if any) need not match the truth's and are dropped.
        truth: the ground truth; `classes` required.
        truth_class: the class to score against: an id, or a name from `truth.class_names`.

    Returns:
        (pred, truth) with coordinates and scores only, the truth cut to `truth_class`, so that `match_picks`
        scores them class-agnostically.

    Raises:
        InputError: the truth has no classes or no particle of `truth_class` (see `Particles.select_class`).
    """
    selected = truth.select_class(truth_class)
    return Particles(pred.coords, scores=pred.scores), Particles(selected.coords, scores=selected.scores)
