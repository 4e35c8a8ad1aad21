"""Box association: vectorised IoU on gated candidate pairs, then optimal assignment.

Cost grows with the number of *overlapping* pairs, not with tracks × detections: candidate pairs come from
a sort-and-sweep over the boxes' x-intervals, IoU is computed only for pairs that also overlap in y, and the
Jonker-Volgenant solver runs only on the rows/columns that still compete after pairs that are each other's
only candidate are taken directly. Small competing sets go to dense ``lap.lapjv`` (as ByteTrack), large ones
to scipy's sparse LAPJV, so a crowded frame costs what its ambiguous part costs.

Hot paths use ``take``/``compress`` rather than fancy indexing: on 2-D arrays they are ~5-10x faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

try:  # lap's lapjv is the dense solver ByteTrack uses; without it scipy solves every size (same optimum)
    import lap as _lap
except ImportError:  # pragma: no cover - lap is pinned in requirements/dev.txt
    _lap = None

# Measured crossovers on a 2-core CPU (bench/bench_tracker.py): up to _DENSE_PAIRS track×detection pairs a
# dense IoU matrix is cheapest, up to _ONE_SIDED_PAIRS a one-sided sweep, beyond that the two-sided sweep.
_DENSE_PAIRS = 2048
_ONE_SIDED_PAIRS = 60000
# Up to this many rows × columns the dense solvers (scipy / lapjv) are faster than the sparse one.
_DENSE_SOLVE = 6400


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense IoU of N×4 and M×4 xyxy boxes -> N×M float64 (0 where boxes do not overlap or are degenerate)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _iou_dense(np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4))


def _iou_dense(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """iou_matrix without the errstate context (the tracker sets one per frame; creating one costs µs)."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=inter > 0)  # no 0/0 for disjoint or degenerate pairs
    return np.where(np.isfinite(iou), iou, 0.0)


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def _ragged(lo: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, k) with lo[i] <= k < lo[i] + counts[i] (counts >= 0), vectorised."""
    # method calls, not np.* functions: these run every frame and the dispatch wrappers cost ~1 µs each
    rows = np.arange(len(lo)).repeat(counts)
    return rows, np.arange(len(rows)) + (lo - (counts.cumsum() - counts)).repeat(counts)


def _pair_iou(a: np.ndarray, b: np.ndarray, rows: np.ndarray, cols: np.ndarray, area_a: np.ndarray,
              area_b: np.ndarray, labels: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of the listed pairs, keeping those that overlap with positive area (and share a label, when given).

    Column arithmetic on purpose: numpy reductions along a short axis (``.all(axis=1)``) cost ~10x more.
    """
    pa, pb = a.take(rows, axis=0), b.take(cols, axis=0)
    lo, hi = np.maximum(pa, pb), np.minimum(pa, pb)   # all four coordinates at once
    iw, ih = hi[:, 2] - lo[:, 0], hi[:, 3] - lo[:, 1]
    idx = ((iw > 0) & (ih > 0)).nonzero()[0]
    rows, cols = rows.take(idx), cols.take(idx)
    if labels is not None:  # class gate on the (few) overlapping pairs
        same = (labels[0].take(rows) == labels[1].take(cols)).nonzero()[0]
        idx, rows, cols = idx.take(same), rows.take(same), cols.take(same)
    inter = iw.take(idx) * ih.take(idx)
    return rows, cols, inter / (area_a.take(rows) + area_b.take(cols) - inter)


def overlap_pairs(a: np.ndarray, b: np.ndarray, labels_a: np.ndarray | None = None,
                  labels_b: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, iou) for every pair of N×4 / M×4 xyxy float64 boxes that overlap with positive area
    (and, when labels are given, have the same label).

    Each pair appears once; pairs come in no particular order. The result does not depend on which of the
    three equivalent methods the sizes select (a test checks them against ``iou_matrix``).
    """
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0)
    labels = None if labels_a is None or labels_b is None else (labels_a, labels_b)
    if n * m <= _DENSE_PAIRS:
        iou = _iou_dense(a, b)
        if labels is not None:
            iou *= labels[0][:, None] == labels[1][None, :]
        rows, cols = np.nonzero(iou > 0)
        return rows, cols, iou[rows, cols]
    wh_a, wh_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    area_a, area_b = wh_a[:, 0] * wh_a[:, 1], wh_b[:, 0] * wh_b[:, 1]
    ob = np.argsort(b[:, 0])
    bx1 = b[:, 0].take(ob)
    if n * m <= _ONE_SIDED_PAIRS:
        # b overlaps a in x only if b.x1 ∈ (a.x1 - max b width, a.x2): one search per track, few calls
        lo = bx1.searchsorted(a[:, 0] - wh_b[:, 0].max(), "right")
        counts = np.maximum(bx1.searchsorted(a[:, 2], "left") - lo, 0)
        rows, k = _ragged(lo, counts)
        return _pair_iou(a, b, rows, ob.take(k), area_a, area_b, labels)
    # Two intervals overlap iff one's start lies inside the other: b.x1 ∈ [a.x1, a.x2) or a.x1 ∈ (b.x1, b.x2);
    # the half-open bounds make the cases disjoint. Exact, and no window widened by one huge box.
    lo = bx1.searchsorted(a[:, 0], "left")
    r1, k1 = _ragged(lo, np.maximum(bx1.searchsorted(a[:, 2], "left") - lo, 0))
    oa = np.argsort(a[:, 0])
    ax1 = a[:, 0].take(oa)
    lo = ax1.searchsorted(b[:, 0], "right")
    c2, k2 = _ragged(lo, np.maximum(ax1.searchsorted(b[:, 2], "left") - lo, 0))
    rows, cols = np.concatenate([r1, oa.take(k2)]), np.concatenate([ob.take(k1), c2])
    # most x-overlapping pairs miss in y: drop them on 1-D gathers before the IoU arithmetic
    y = (a[:, 1].take(rows) < b[:, 3].take(cols)) & (b[:, 1].take(cols) < a[:, 3].take(rows))
    idx = y.nonzero()[0]
    return _pair_iou(a, b, rows.take(idx), cols.take(idx), area_a, area_b, labels)


def solve_sparse(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, cost_limit: float,
                 max_per_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching over candidate edges, each with cost <= ``cost_limit``.

    Leaving a row and a column unmatched costs ``cost_limit`` (lap's ``extend_cost`` convention, as ByteTrack),
    so an edge is taken exactly when it lowers the total. With ``max_per_row`` only each row's cheapest edges
    enter, which bounds the problem on pathological frames (thousands of mutually overlapping boxes); normal
    frames have a few candidates per row and are solved exactly. -> (matched rows, matched cols).
    """
    if len(rows) == 0:
        return rows, cols
    rdeg = np.bincount(rows)
    if max_per_row is not None and rdeg.max() > max_per_row:
        rows, cols, cost = _cheapest_per_row(rows, cols, cost, max_per_row)
        rdeg = np.bincount(rows)
    # A pair that is each other's only candidate is in every optimal matching: take it without the solver.
    cdeg = np.bincount(cols)
    single = (rdeg.take(rows) == 1) & (cdeg.take(cols) == 1)
    if single.all():
        return rows, cols
    rest = ~single
    rr, rc = rows.compress(rest), cols.compress(rest)
    # compact indices of the rows/columns left (cheaper than np.unique)
    r_in = np.bincount(rr, minlength=len(rdeg)) > 0
    c_in = np.bincount(rc, minlength=len(cdeg)) > 0
    ri, ci = (r_in.cumsum() - 1).take(rr), (c_in.cumsum() - 1).take(rc)
    row_of, col_of = r_in.nonzero()[0], c_in.nonzero()[0]
    nr, nc = len(row_of), len(col_of)
    if nr * nc <= _DENSE_SOLVE:
        mr, mc = _assign_dense(ri, ci, cost.compress(rest), nr, nc, cost_limit)
    else:
        mr, mc = _assign_sparse(ri, ci, cost.compress(rest), nr, nc, cost_limit)
    return np.concatenate([rows.compress(single), row_of.take(mr)]), np.concatenate([cols.compress(single), col_of.take(mc)])


def _cheapest_per_row(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    order = np.lexsort((cost, rows))                        # by row, then by cost
    r = rows.take(order)
    rank = np.arange(len(r)) - r.searchsorted(r, "left")    # position within its row
    keep = order.take((rank < k).nonzero()[0])
    return rows.take(keep), cols.take(keep), cost.take(keep)


def _assign_sparse(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, nr: int, nc: int,
                   cost_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Sparse Jonker-Volgenant (scipy's LAPJVsp) on an augmented square problem with the same optimum.

    Rows: nr real + one dummy per column; columns: nc real + one dummy per row. Row i -> its dummy costs
    cost_limit/2 (i unmatched), dummy of column j -> j likewise, and dummy(j) -> dummy(i) costs 0 for each
    real edge (i, j), so every perfect matching is a valid partial matching at the same total cost.
    """

    e = len(rows)
    ar_r, ar_c = np.arange(nr), np.arange(nc)
    r = np.concatenate([rows, ar_r, nr + ar_c, nr + cols])
    c = np.concatenate([cols, nc + ar_r, ar_c, nc + rows])
    # + 1: a sparse matrix drops explicit zeros; a constant on every edge of a perfect matching changes no optimum
    w = np.concatenate([cost, np.full(nr + nc, cost_limit / 2), np.zeros(e)]) + 1.0
    n = nr + nc
    order = np.argsort(r, kind="stable")  # CSR built directly: the COO -> CSR conversion costs more than the solve
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
    mr, mc = min_weight_full_bipartite_matching(csr_matrix((w[order], c[order], indptr), shape=(n, n)))
    real = (mr < nr) & (mc < nc)
    return mr[real], mc[real]


def _assign_dense(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, nr: int, nc: int,
                  cost_limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Dense optimal assignment with "unmatched" slots, the square form of lap's ``extend_cost``.

    (nr+nc)² matrix: real block = edge costs (non-edges cost more than leaving both sides unmatched),
    row i -> any dummy column and any dummy row -> column j cost cost_limit/2, dummy -> dummy costs 0.
    """
    n = nr + nc
    pad = np.empty((n, n))  # np.empty + fill: np.full is a Python-level wrapper
    pad.fill(cost_limit / 2)
    pad[:nr, :nc] = 2.0 * cost_limit + 1.0
    pad[rows, cols] = cost
    pad[nr:, nc:] = 0.0
    if _lap is not None and n > 24:  # measured: scipy's solver wins on tiny matrices, lapjv above
        _, x, _ = _lap.lapjv(pad, extend_cost=False)
        r = np.arange(nr)
        c = x[:nr]
    else:
        r, c = linear_sum_assignment(pad)
        r, c = r[:nr], c[:nr]
    good = ((c < nc) & (pad[r, c] <= cost_limit)).nonzero()[0]  # a real column, on a real edge
    return r.take(good), c.take(good)


@dataclass
class Candidates:
    """Candidate track-detection pairs of one frame (computed once, shared by all association stages)."""

    rows: np.ndarray   # E track indices
    cols: np.ndarray   # E detection indices
    iou: np.ndarray    # E
    cost: np.ndarray   # E: 1 - IoU (+ centre-distance term)


def candidates(track_boxes: np.ndarray, track_labels: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
               class_aware: bool, center_weight: float = 0.0) -> Candidates:
    """Every overlapping pair of N tracks and M detections (xyxy float64), class-gated when ``class_aware``.

    Cost is ``1 - IoU``, plus ``center_weight`` × centre distance / track diagonal (capped at 1) when that
    weight is set, which separates near-equal IoUs in crowds by how far apart the centres are.
    """
    if class_aware:
        rows, cols, iou = overlap_pairs(track_boxes, det_boxes, track_labels, det_labels)
    else:
        rows, cols, iou = overlap_pairs(track_boxes, det_boxes)
    cost = 1.0 - iou
    if center_weight > 0 and len(rows):
        t, d = track_boxes.take(rows, axis=0), det_boxes.take(cols, axis=0)
        dist = np.hypot((t[:, 0] + t[:, 2] - d[:, 0] - d[:, 2]) / 2, (t[:, 1] + t[:, 3] - d[:, 1] - d[:, 3]) / 2)
        diag = np.hypot(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            cost = cost + center_weight * np.minimum(np.nan_to_num(dist / diag, nan=1.0), 1.0)
    return Candidates(rows, cols, iou, cost)


def match_stage(c: Candidates, edge_ok: np.ndarray, min_iou: float, center_weight: float = 0.0,
                max_per_track: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal matching over the candidates where ``edge_ok`` and IoU ≥ ``min_iou`` -> (track idx, det idx)."""
    keep = (edge_ok & (c.iou >= min_iou)).nonzero()[0]
    # every kept edge stays admissible: the limit is the worst cost an edge passing the IoU gate can have
    return solve_sparse(c.rows.take(keep), c.cols.take(keep), c.cost.take(keep), 1.0 - min_iou + center_weight,
                        max_per_track)


def associate(track_boxes: np.ndarray, track_labels: np.ndarray, det_boxes: np.ndarray, det_labels: np.ndarray,
              min_iou: float, class_aware: bool, center_weight: float = 0.0,
              max_per_track: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One-stage matching of N tracks to M detections (xyxy float64) -> (track indices, detection indices)."""
    c = candidates(track_boxes, track_labels, det_boxes, det_labels, class_aware, center_weight)
    return match_stage(c, np.ones(len(c.rows), bool), min_iou, center_weight, max_per_track)
