"""Precision, recall and F1 from match counts, shared by picking and instance scores.

Empty inputs never give NaN: precision is 1 when there are no predictions and no truths, else 0 when
there are no predictions; recall is 1 when there are no truths and no predictions, else 0 when there
are no truths. F1 is 0 whenever precision + recall is 0. So a score is 1 only when nothing is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass


def precision_recall_f1(tp: int, n_pred: int, n_truth: int) -> tuple[float, float, float]:
    """Precision, recall, F1 of `tp` matches among `n_pred` predictions and `n_truth` truths (rules above)."""
    nothing = n_pred == 0 and n_truth == 0
    precision = tp / n_pred if n_pred else (1.0 if nothing else 0.0)
    recall = tp / n_truth if n_truth else (1.0 if nothing else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f1)


@dataclass
class MatchCounts:
    """What a one-to-one matching of predictions to truths counts: TP = matched pairs, FP = predictions left
    over, FN = truths left over, and the rates from them."""

    n_pred: int
    n_truth: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
