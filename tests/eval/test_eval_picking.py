"""Picking metrics: one-to-one matching, per-class scores, PR curve and AP, against hand-computed answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from cryoseg.errors import InputError
from cryoseg.eval import (
    PickingConfig,
    PrecisionRecallCurve,
    against_truth_class,
    average_precision,
    match_picks,
    precision_recall_curve,
)
from cryoseg.io import Particles


def P(coords, **kw) -> Particles:  # noqa: N802
    return Particles(np.asarray(coords, dtype=float).reshape(-1, 3), **kw)


TRUTH = P([[10, 10, 10], [10, 10, 40], [30, 20, 10], [40, 40, 40]])


def test_truth_against_itself_is_perfect():
    s = match_picks(TRUTH, TRUTH, tolerance=2)
    assert (s.tp, s.fp, s.fn) == (4, 0, 0)
    assert s.precision == s.recall == s.f1 == 1.0
    assert s.mean_distance == 0.0
    np.testing.assert_array_equal(s.truth_index[np.argsort(s.pred_index)], np.arange(4))


def test_shift_within_and_beyond_tolerance():
    inside = match_picks(P(TRUTH.coords + [0, 0, 2.9]), TRUTH, tolerance=3)
    assert inside.tp == 4 and inside.f1 == 1.0
    assert inside.mean_distance == pytest.approx(2.9)
    beyond = match_picks(P(TRUTH.coords + [0, 0, 3.1]), TRUTH, tolerance=3)
    assert (beyond.tp, beyond.fp, beyond.fn) == (0, 4, 4)
    assert beyond.precision == beyond.recall == beyond.f1 == 0.0
    assert beyond.mean_distance is None


def test_two_predictions_near_one_particle_give_one_tp_one_fp():
    truth = P([[10, 10, 10]])
    pred = P([[10, 10, 11], [10, 11, 10.5]])
    s = match_picks(pred, truth, tolerance=3)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert s.precision == 0.5 and s.recall == 1.0 and s.f1 == pytest.approx(2 / 3)
    assert s.pred_index.tolist() == [0]  # the nearer one is kept


def test_matching_is_optimal_not_greedy():
    # Greedy nearest-first pairs p0 with t1 (distance 1) and leaves t0 and p1 unmatched;
    # the optimal one-to-one matching finds two pairs.
    truth = P([[0, 0, 0], [0, 0, 2]])
    pred = P([[0, 0, 1.9], [0, 0, 4.5]])
    s = match_picks(pred, truth, tolerance=2.6)
    assert s.tp == 2
    assert sorted(zip(s.pred_index.tolist(), s.truth_index.tolist())) == [(0, 0), (1, 1)]


def test_matches_brute_force_on_random_sets():
    rng = np.random.default_rng(3)
    for _ in range(30):
        n, m = rng.integers(1, 15, 2)
        p, t = rng.uniform(0, 15, (n, 3)), rng.uniform(0, 15, (m, 3))
        s = match_picks(P(p), P(t), tolerance=4)
        d = np.linalg.norm(p[:, None] - t[None], axis=2)
        cost = np.where(d <= 4, d, 1e6)
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < 1e6
        assert s.tp == ok.sum()
        assert s.distances.sum() == pytest.approx(cost[r, c][ok].sum())


def test_thousands_of_picks():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 400, (3000, 3))
    pred = np.concatenate([truth + rng.normal(0, 0.5, truth.shape), rng.uniform(0, 400, (500, 3))])
    s = match_picks(P(pred), P(truth), tolerance=3)
    assert s.n_pred == 3500 and s.n_truth == 3000
    assert s.tp >= 2995  # every true particle has its own jittered copy within 3 voxels
    assert s.fp == 3500 - s.tp and s.fn == 3000 - s.tp


def test_per_class_matching_separates_classes():
    truth = P([[10, 10, 10], [30, 30, 30]], classes=[1, 2], class_names={1: "ribosome", 2: "proteasome"})
    # Right places, but the pick at the first particle is labelled class 2.
    pred = P([[10, 10, 10], [30, 30, 30]], classes=[2, 2])
    s = match_picks(pred, truth, tolerance=2)
    assert s.tp == 2  # overall is class-agnostic
    assert set(s.per_class) == {1, 2}
    c1, c2 = s.per_class[1], s.per_class[2]
    assert (c1.n_pred, c1.tp, c1.fn, c1.recall, c1.precision) == (0, 0, 1, 0.0, 0.0)
    assert (c2.n_pred, c2.tp, c2.fp, c2.fn) == (2, 1, 1, 0)
    assert c2.precision == 0.5 and c2.recall == 1.0
    d = s.to_dict()
    assert d["per_class"]["1"]["name"] == "ribosome" and d["per_class"]["2"]["tp"] == 1
    json.dumps(d)  # JSON-ready


def test_no_per_class_when_only_one_side_has_classes():
    s = match_picks(P(TRUTH.coords, classes=[1, 1, 2, 2]), TRUTH, tolerance=1)
    assert s.per_class == {} and s.tp == 4


def test_angstrom_tolerance_with_anisotropic_voxels():
    truth = P([[10, 10, 10]])
    pred_z = P([[12, 10, 10]])  # 2 voxels along z = 40 Å
    pred_x = P([[10, 10, 12]])  # 2 voxels along x = 10 Å
    vs = (20.0, 5.0, 5.0)
    assert match_picks(pred_z, truth, 15, voxel_size=vs, tolerance_unit="angstrom").tp == 0
    sx = match_picks(pred_x, truth, 15, voxel_size=vs, tolerance_unit="angstrom")
    assert sx.tp == 1 and sx.mean_distance == pytest.approx(10.0) and sx.tolerance_unit == "angstrom"
    # In voxels both are 2 away.
    assert match_picks(pred_z, truth, 2.5, voxel_size=vs).tp == 1


def test_empty_inputs_give_defined_values():
    empty = P(np.zeros((0, 3)))
    both = match_picks(empty, empty, 3)
    assert (both.precision, both.recall, both.f1) == (1.0, 1.0, 1.0)
    no_pred = match_picks(empty, TRUTH, 3)
    assert (no_pred.tp, no_pred.fn, no_pred.precision, no_pred.recall, no_pred.f1) == (0, 4, 0.0, 0.0, 0.0)
    no_truth = match_picks(TRUTH, empty, 3)
    assert (no_truth.fp, no_truth.precision, no_truth.recall, no_truth.f1) == (4, 0.0, 0.0, 0.0)
    for s in (both, no_pred, no_truth):
        assert not any(isinstance(v, float) and np.isnan(v) for v in s.to_dict().values())


def test_default_tolerance_is_the_config_value():
    pred = P(TRUTH.coords + [0, 0, PickingConfig().tolerance - 0.01])
    assert match_picks(pred, TRUTH).tp == 4
    assert match_picks(P(TRUTH.coords + [0, 0, PickingConfig().tolerance + 0.01]), TRUTH).tp == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"tolerance": -1}, "tolerance must be a finite number >= 0"),
    ({"tolerance": float("nan")}, "tolerance must be a finite number >= 0"),
    ({"tolerance": 3, "tolerance_unit": "nm"}, "tolerance unit must be 'voxel' or 'angstrom'"),
    ({"tolerance": 3, "tolerance_unit": "angstrom"}, "needs the voxel size"),
    ({"tolerance": 3, "tolerance_unit": "angstrom", "voxel_size": 0}, "voxel size must be positive"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        match_picks(TRUTH, TRUTH, **kwargs)


def test_non_particles_input_is_rejected():
    with pytest.raises(InputError, match="predictions must be a Particles table"):
        match_picks(np.zeros((2, 3)), TRUTH, 3)


# Hand example for the PR curve: three true particles on a line; four scored predictions.
PR_TRUTH = P([[0, 0, 0], [0, 0, 50], [0, 0, 100]])
PR_PRED = P([[0, 0, 1], [0, 50, 0], [0, 0, 51], [0, 80, 80]], scores=[0.9, 0.8, 0.7, 0.6])  # TP FP TP FP


def test_precision_recall_curve_by_hand():
    curve = precision_recall_curve(PR_PRED, PR_TRUTH, tolerance=3)
    assert isinstance(curve, PrecisionRecallCurve)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(curve.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_average_precision_by_hand():
    # Interpolated precision at the recall steps: 1 (at 1/3) and 2/3 (at 2/3): AP = 1/3 + 2/9.
    assert average_precision(PR_PRED, PR_TRUTH, tolerance=3) == pytest.approx(1 / 3 + 2 / 9)
    s = match_picks(PR_PRED, PR_TRUTH, tolerance=3)
    assert s.average_precision == pytest.approx(5 / 9)
    assert "AP" in [c.header for c in s.to_table().columns]


def test_pr_curve_ties_share_one_point_and_ranking_matters():
    pred = P(PR_PRED.coords, scores=[0.5, 0.5, 0.5, 0.5])
    curve = precision_recall_curve(pred, PR_TRUTH, tolerance=3)
    assert curve.thresholds.tolist() == [0.5] and curve.precision.tolist() == [0.5]
    assert curve.recall.tolist() == [2 / 3]
    perfect_order = P(PR_PRED.coords, scores=[0.9, 0.1, 0.8, 0.2])
    assert average_precision(perfect_order, PR_TRUTH, tolerance=3) == pytest.approx(2 / 3)


def test_pr_curve_uses_largest_matching_at_each_threshold():
    # The top pick sits between two truths; the second pick can only take truth 0. A greedy matcher that
    # gives truth 0 to the top pick would report 1 TP at the second threshold; the largest matching has 2.
    truth = P([[0, 0, 0], [0, 0, 4]])
    pred = P([[0, 0, 1.9], [0, 0, -2]], scores=[0.9, 0.8])
    curve = precision_recall_curve(pred, truth, tolerance=2.5)
    np.testing.assert_allclose(curve.recall, [0.5, 1.0])
    np.testing.assert_allclose(curve.precision, [1.0, 1.0])
    assert curve.recall[-1] == match_picks(pred, truth, tolerance=2.5).recall


def test_pr_curve_endpoint_equals_match_picks_on_random_sets():
    rng = np.random.default_rng(5)
    for _ in range(20):
        t = rng.uniform(0, 12, (rng.integers(1, 12), 3))
        p = rng.uniform(0, 12, (rng.integers(1, 12), 3))
        pred = P(p, scores=rng.uniform(size=len(p)))
        curve = precision_recall_curve(pred, P(t), tolerance=3)
        s = match_picks(pred, P(t), tolerance=3)
        assert curve.recall[-1] == pytest.approx(s.recall) and curve.precision[-1] == pytest.approx(s.precision)
        assert np.all(np.diff(curve.recall) >= 0)


def test_pr_edge_cases():
    empty = P(np.zeros((0, 3)), scores=np.zeros(0))
    curve = precision_recall_curve(empty, PR_TRUTH, 3)
    assert curve.precision.size == curve.recall.size == curve.thresholds.size == 0
    assert average_precision(empty, PR_TRUTH, 3) == 0.0
    assert average_precision(empty, P(np.zeros((0, 3))), 3) == 1.0
    assert average_precision(PR_PRED, P(np.zeros((0, 3))), 3) == 0.0
    assert precision_recall_curve(PR_PRED, P(np.zeros((0, 3))), 3).recall.tolist() == [0.0] * 4
    with pytest.raises(InputError, match="predictions have no scores"):
        average_precision(P(PR_PRED.coords), PR_TRUTH, 3)
    assert match_picks(P(PR_PRED.coords), PR_TRUTH, 3).average_precision is None


# --- choosing one class of the ground truth --------------------------------------------------------------------

NAMED = P([[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]], classes=[2, 3, 2, 7], scores=[0.1, 0.2, 0.3, 0.4],
          class_names={2: "ribosome", 3: "shell"})


@pytest.mark.parametrize("wanted", [2, "2", "ribosome"])
def test_select_class_by_id_or_name_keeps_the_attributes(wanted):
    chosen = NAMED.select_class(wanted)
    np.testing.assert_array_equal(chosen.coords, [[1, 1, 1], [3, 3, 3]])
    assert chosen.classes.tolist() == [2, 2] and chosen.scores.tolist() == [0.1, 0.3]
    assert chosen.class_names == NAMED.class_names


def test_select_class_prefers_a_name_over_a_number_written_as_text():
    tricky = P([[1, 1, 1], [2, 2, 2]], classes=[3, 5], class_names={5: "3"})
    assert tricky.select_class("3").classes.tolist() == [5]
    assert tricky.select_class(3).classes.tolist() == [3]


def test_select_class_errors_name_what_is_there():
    with pytest.raises(InputError, match=r"no particles of class ferritin; classes present: 2 \(ribosome\), "
                                         r"3 \(shell\), 7$"):
        NAMED.select_class("ferritin")
    with pytest.raises(InputError, match="no particles of class 5; classes present: 2 "):
        NAMED.select_class(5)
    with pytest.raises(InputError, match="the particles have no classes, so class 2 cannot be selected"):
        TRUTH.select_class(2)


def test_against_truth_class_scores_a_single_kind_pick_class_agnostically():
    pred = P([[1, 1, 1.5], [3, 3, 3.5], [4, 4, 4]], classes=[9, 9, 9], scores=[0.9, 0.8, 0.7])
    p, t = against_truth_class(pred, NAMED, "ribosome")
    assert p.classes is None and t.classes is None
    np.testing.assert_array_equal(p.coords, pred.coords)
    assert p.scores.tolist() == [0.9, 0.8, 0.7] and t.scores.tolist() == [0.1, 0.3]
    np.testing.assert_array_equal(t.coords, [[1, 1, 1], [3, 3, 3]])
    s = match_picks(p, t, tolerance=1)
    assert (s.tp, s.fp, s.fn) == (2, 1, 0) and s.per_class == {}
    with pytest.raises(InputError, match="no particles of class 4"):
        against_truth_class(pred, NAMED, 4)
