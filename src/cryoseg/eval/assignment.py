"""Optimal one-to-one assignment on a sparse set of allowed pairs.

Picking and instance metrics both need "the best one-to-one matching among pairs that are allowed"
(picks within a distance tolerance, instances that overlap). The allowed pairs are few, so the
bipartite graph splits into many small connected components; each component is solved with
`scipy.optimize.linear_sum_assignment` on its own small dense matrix. That keeps thousands of picks
cheap: the cost is set by the largest component, not by N x M.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def max_weight_matching(rows: np.ndarray, cols: np.ndarray, weights: np.ndarray,
                        n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-total-weight one-to-one matching restricted to the allowed pairs.

    Args:
        rows: (E,) int row index of each allowed pair, in [0, n_rows).
        cols: (E,) int column index of each allowed pair, in [0, n_cols).
        weights: (E,) float weight of each pair; must be > 0 (a pair with weight <= 0 never helps).
        n_rows, n_cols: number of row and column items.

    Returns:
        (matched_rows, matched_cols): (K,) int arrays of the chosen pairs, sorted by row.
        Only allowed pairs are returned. Duplicate (row, col) pairs keep their largest weight.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    empty = np.zeros(0, dtype=np.int64)
    if rows.size == 0 or n_rows == 0 or n_cols == 0:
        return empty, empty.copy()

    # Components of the bipartite graph: nodes 0..n_rows-1 are rows, n_rows.. are columns.
    n = n_rows + n_cols
    graph = coo_matrix((np.ones(rows.size), (rows, cols + n_rows)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[rows]
    order = np.argsort(edge_comp, kind="stable")
    rows, cols, weights, edge_comp = rows[order], cols[order], weights[order], edge_comp[order]
    bounds = np.flatnonzero(np.diff(edge_comp)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [rows.size]))

    out_r: list[np.ndarray] = []
    out_c: list[np.ndarray] = []
    for s, e in zip(starts, ends):
        r, c, w = rows[s:e], cols[s:e], weights[s:e]
        if e - s == 1:  # the common case: an isolated pair
            if w[0] > 0:
                out_r.append(r)
                out_c.append(c)
            continue
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        # Not-allowed pairs get weight 0, so choosing them never beats leaving the item unmatched.
        dense = np.zeros((ur.size, uc.size))
        np.maximum.at(dense, (ri, ci), w)
        sel_r, sel_c = linear_sum_assignment(dense, maximize=True)
        keep = dense[sel_r, sel_c] > 0
        out_r.append(ur[sel_r[keep]])
        out_c.append(uc[sel_c[keep]])
    if not out_r:
        return empty, empty.copy()
    mr = np.concatenate(out_r)
    mc = np.concatenate(out_c)
    order = np.argsort(mr, kind="stable")
    return mr[order], mc[order]


def max_cardinality_min_cost_matching(rows: np.ndarray, cols: np.ndarray, costs: np.ndarray,
                                      n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The largest one-to-one matching among allowed pairs; among those, the one with the least total cost.

    Args:
        rows, cols: (E,) int indices of the allowed pairs.
        costs: (E,) float, >= 0 (e.g. distances, or 1 - IoU).
        n_rows, n_cols: number of row and column items.

    Returns:
        (matched_rows, matched_cols): (K,) int arrays, sorted by row.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.size == 0:
        return max_weight_matching(rows, cols, costs, n_rows, n_cols)
    # Each matched pair is worth `big` minus its cost. `big` exceeds the summed cost of any matching,
    # so one more pair always outweighs any saving in cost: cardinality first, then cost.
    big = float(costs.max()) * (min(n_rows, n_cols) + 1) + 1.0
    return max_weight_matching(rows, cols, big - costs, n_rows, n_cols)
