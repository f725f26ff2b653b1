"""Optimal one-to-one assignment on a sparse set of allowed pairs, and the matching of points within a distance.

Picking and instance metrics both need "the best one-to-one matching among pairs that are allowed"
(picks within a distance tolerance, instances that overlap). The allowed pairs are few, so the
bipartite graph splits into many small connected components; each component is solved with
`scipy.optimize.linear_sum_assignment` on its own small dense matrix. That keeps thousands of picks
cheap: the cost is set by the largest component, not by N x M.

For points (particle centres), `pairs_within` lists the allowed pairs with two k-d trees, `match_points`
gives the largest matching within the tolerance, and `prefix_matching_sizes` gives the size of the
largest matching for every prefix of a ranking (the PR curve's TP counts) in one incremental pass.

scipy is imported where it is used: the CLI reads this package's defaults (`PickingConfig`) for its help
when it starts, and every command would otherwise pay for loading scipy.
"""

from __future__ import annotations

import numpy as np


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
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

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


def pairs_within(a: np.ndarray, b: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of a point of `a` and a point of `b` at most `tolerance` apart (Euclidean), from two k-d trees.

    Args:
        a: (N, 3) points, e.g. z, y, x; b: (M, 3) points in the same units as `tolerance`.
        tolerance: the largest distance of an allowed pair, >= 0.

    Returns:
        (rows, cols, distances): (E,) int indices into `a` and `b`, and (E,) float distances.
    """
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        z = np.zeros(0, np.int64)
        return z, z.copy(), np.zeros(0)
    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), tolerance, output_type="ndarray")
    return pairs["i"].astype(np.int64), pairs["j"].astype(np.int64), pairs["v"].astype(np.float64)


def match_points(a: np.ndarray, b: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest one-to-one matching of points `a` to points `b` at most `tolerance` apart; among equally
    large ones, the one with the smallest summed distance.

    Args:
        a: (N, 3) points; b: (M, 3) points, in the units of `tolerance`.
        tolerance: the largest distance of a matched pair, >= 0.

    Returns:
        (a_index, b_index, distances): (K,) int indices of the matched pairs, sorted by `a_index`, and their
        (K,) float distances.
    """
    rows, cols, dist = pairs_within(a, b, tolerance)
    mr, mc = max_cardinality_min_cost_matching(rows, cols, dist, len(a), len(b))
    distances = np.linalg.norm(a[mr] - b[mc], axis=1) if mr.size else np.zeros(0)
    return mr, mc, distances


def prefix_matching_sizes(order: np.ndarray, rows: np.ndarray, cols: np.ndarray, costs: np.ndarray,
                          n_rows: int, n_cols: int) -> np.ndarray:
    """Size of the largest matching between the first k row items of `order` and the columns, for every k.

    Args:
        order: (R,) int row items in the order they are added (e.g. picks by decreasing score).
        rows, cols: (E,) int indices of the allowed pairs.
        costs: (E,) float; each row tries its cheapest pairs first (it changes the speed, not the sizes).
        n_rows, n_cols: number of row and column items.

    Returns:
        (R,) int64: entry k is the size of the largest matching among the first k + 1 rows of `order`.

    Adds rows one at a time and looks for an augmenting path (Kuhn's algorithm). The matched set of a
    prefix only grows, and the rows it can hold form a transversal matroid, so this greedy gives the
    maximum for every prefix. Columns visited by a failed search can never lie on an augmenting path
    later (their rows' neighbours are all inside that set), so they are retired, which keeps the total
    work small.
    """
    by_row = np.lexsort((costs, rows))  # each row's candidates, cheapest first
    cols = cols[by_row]
    indptr = np.searchsorted(rows[by_row], np.arange(n_rows + 1))
    indptr_l, cols_l = indptr.tolist(), cols.tolist()
    owner = [-1] * n_cols  # row matched to each column
    seen = [0] * n_cols  # search number that last visited each column
    dead = [False] * n_cols
    sizes = np.zeros(len(order), dtype=np.int64)
    size = 0
    for k, root in enumerate(order.tolist()):
        tag = k + 1
        stack, pos, via = [root], [indptr_l[root]], []
        visited: list[int] = []
        found = False
        while stack and not found:
            r = stack[-1]
            i = pos[-1]
            if i == indptr_l[r + 1]:
                stack.pop()
                pos.pop()
                if via:
                    via.pop()
                continue
            pos[-1] = i + 1
            c = cols_l[i]
            if dead[c] or seen[c] == tag:
                continue
            seen[c] = tag
            visited.append(c)
            if owner[c] < 0:
                for rr, cc in zip(stack, via + [c]):  # flip the alternating path
                    owner[cc] = rr
                found = True
            else:
                stack.append(owner[c])
                pos.append(indptr_l[owner[c]])
                via.append(c)
        if found:
            size += 1
        else:
            for c in visited:
                dead[c] = True
        sizes[k] = size
    return sizes
