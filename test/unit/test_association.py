"""Association: IoU candidates (all three pair methods), optimal assignment, and ByteTrack's two stages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mim_perception.core.config import load_config
from mim_perception.core.tracking import association as A
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig, TrackState
from mim_perception.core.types import Detections


def random_boxes(rng: np.random.Generator, n: int, extent: float = 500.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (n, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 80, (n, 2))], axis=1)
    b[: n // 5, 0] = b[0, 0]  # ties on x1 (the sweep's half-open bounds must not drop or double them)
    return b


def test_iou_matrix_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [10, 0, 20, 10], [0, 0, 10, 10], [2, 2, 4, 4]], float)
    np.testing.assert_allclose(A.iou_matrix(a, b)[0], [50 / 150, 0.0, 1.0, 4 / 100])  # touching edges: 0
    assert A.iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    degenerate = np.array([[5, 5, 5, 9], [np.nan, 0, 1, 1]])
    assert not A.iou_matrix(degenerate, b).any()


@pytest.mark.parametrize(("dense", "one_sided"), [(10**9, 0), (0, 10**9), (0, 0)], ids=["dense", "one-sided", "two-sided"])
@pytest.mark.parametrize("n", [1, 7, 60, 400])
def test_overlap_pairs_equal_dense_iou(monkeypatch, dense, one_sided, n):
    monkeypatch.setattr(A, "_DENSE_PAIRS", dense)
    monkeypatch.setattr(A, "_ONE_SIDED_PAIRS", one_sided)
    rng = np.random.default_rng(n)
    a, b = random_boxes(rng, n), random_boxes(rng, n + 3)
    b[-1] = a[0]  # an identical pair
    b[-2] = [a[0, 2], a[0, 1], a[0, 2] + 5, a[0, 3]]  # touches a[0]'s right edge: IoU 0, not a pair
    ref = A.iou_matrix(a, b)
    rows, cols, iou = A.overlap_pairs(a, b)
    got = np.zeros_like(ref)
    got[rows, cols] = iou
    assert len(rows) == np.count_nonzero(ref) and len(set(zip(rows, cols, strict=True))) == len(rows)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    la, lb = rng.integers(0, 3, len(a)), rng.integers(0, 3, len(b))
    rows, cols, _ = A.overlap_pairs(a, b, la, lb)
    assert set(zip(rows, cols, strict=True)) == set(zip(*np.nonzero((ref > 0) & (la[:, None] == lb[None, :])), strict=True))


def brute_force_cost(cost: np.ndarray, limit: float) -> float:
    """Min over all partial matchings of sum(edge costs) + limit/2 per unmatched row or column."""
    n, m = cost.shape
    pad = np.full((n + m, n + m), limit / 2)
    pad[:n, :m] = np.where(np.isfinite(cost), cost, 2 * limit + 1)
    pad[n:, m:] = 0
    r, c = linear_sum_assignment(pad)
    return float(pad[r, c].sum())


def total(rows, cols, cost_of, n, m, limit):
    return sum(cost_of[(r, c)] for r, c in zip(rows, cols, strict=True)) + limit / 2 * (n + m - 2 * len(rows))


@pytest.mark.parametrize("path", ["dense-lap", "dense-scipy", "sparse"])
def test_solve_sparse_is_optimal(monkeypatch, path):
    if path == "sparse":
        monkeypatch.setattr(A, "_DENSE_SOLVE", 0)
    if path == "dense-scipy":
        monkeypatch.setattr(A, "_lap", None)
    rng = np.random.default_rng(7)
    limit = 0.8
    for trial in range(40):
        n, m = rng.integers(1, 14, 2)
        dense = np.where(rng.random((n, m)) < 0.35, rng.uniform(0, limit, (n, m)), np.inf)
        if trial % 4 == 0:
            dense[:] = np.inf
            dense[np.arange(min(n, m)), np.arange(min(n, m))] = 0.1  # all one-to-one (the no-solver path)
        rows, cols = np.nonzero(np.isfinite(dense))
        mr, mc = A.solve_sparse(rows, cols, dense[rows, cols], limit)
        assert len(set(mr)) == len(mr) and len(set(mc)) == len(mc)
        assert np.isfinite(dense[mr, mc]).all()
        cost_of = {(r, c): dense[r, c] for r, c in zip(rows, cols, strict=True)}
        assert total(mr, mc, cost_of, n, m, limit) == pytest.approx(brute_force_cost(dense, limit))


def test_candidate_cap_keeps_each_rows_cheapest_edges():
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(6), 10)
    cols = np.tile(np.arange(10), 6)
    cost = rng.uniform(0, 0.7, 60)
    exact = A.solve_sparse(rows, cols, cost, 0.8)
    assert A.solve_sparse(rows, cols, cost, 0.8, max_per_row=10)[0].tolist() == exact[0].tolist()  # cap not reached
    mr, mc = A.solve_sparse(rows, cols, cost, 0.8, max_per_row=2)
    assert len(mr) == len(set(mr)) == len(set(mc)) > 0
    for r, c in zip(mr, mc, strict=True):
        row_costs = np.sort(cost[rows == r])
        assert cost[(rows == r) & (cols == c)][0] <= row_costs[1]  # one of the row's two cheapest edges


def test_associate_takes_the_better_global_assignment_and_gates_classes():
    tracks = np.array([[0, 0, 10, 10], [8, 0, 18, 10]], float)
    dets = np.array([[6, 0, 16, 10], [0, 0, 10, 10]], float)
    # greedy would give det0 to track1 first... the optimum pairs t0-d1 (IoU 1) and t1-d0 (IoU 0.67)
    ti, di = A.associate(tracks, np.zeros(2), dets, np.zeros(2), 0.2, True)
    assert dict(zip(ti.tolist(), di.tolist(), strict=True)) == {0: 1, 1: 0}
    ti, di = A.associate(tracks, np.array([0, 1]), dets, np.array([1, 1]), 0.2, True)
    assert dict(zip(ti.tolist(), di.tolist(), strict=True)) == {1: 0}
    ti, _ = A.associate(tracks, np.array([0, 1]), dets, np.array([1, 1]), 0.2, False)
    assert len(ti) == 2
    ti, _ = A.associate(tracks, np.zeros(2), dets + 100, np.zeros(2), 0.2, True)
    assert len(ti) == 0


def test_center_distance_breaks_iou_ties():
    track = np.array([[0, 0, 10, 10]], float)
    dets = np.array([[-2, -2, 12, 12], [0, 0, 14, 14]], float)  # same IoU (100/196), the first is centred
    for _ in range(3):
        _, di = A.associate(track, np.zeros(1), dets, np.zeros(2), 0.2, True, center_weight=0.5)
        assert di.tolist() == [0]


# ---- the two ByteTrack stages, through the tracker ----------------------------------------------------------

def cfg(**over) -> TrackerConfig:
    return load_config(TrackerConfig, overrides={f"tracker.{k}": v for k, v in over.items()}, prefix="tracker.")


def dets(*rows) -> Detections:
    """rows of (x1, y1, x2, y2, score, label)."""
    a = np.array(rows, float).reshape(-1, 6)
    return Detections.create(a[:, :4], a[:, 4], a[:, 5])


def box(x: float, s: float = 0.9, label: int = 0, y: float = 100.0) -> tuple:
    return (x, y, x + 40, y + 80, s, label)


def test_stage1_high_scores_then_stage2_low_score_rescue():
    tr = Tracker(cfg())
    for f in range(5):
        out = tr.update(dets(box(100 + 2 * f), box(400 - 2 * f)), f / 30)
    ids = out.ids.tolist()
    assert (out.states == TrackState.CONFIRMED).all() and len(ids) == 2
    # occlusion: the first object's score falls below high_score; the second vanishes
    out = tr.update(dets(box(110, s=0.3)), 5 / 30)
    by_id = dict(zip(out.ids.tolist(), out.states.tolist(), strict=True))
    assert by_id == {ids[0]: TrackState.CONFIRMED, ids[1]: TrackState.LOST}
    assert out.scores[out.ids == ids[0]][0] == pytest.approx(0.3) and out.det_index[out.ids == ids[0]][0] == 0
    # a low-score detection never starts a track, and rescues only with IoU >= match_iou_low
    out = tr.update(dets(box(700, s=0.4), box(140, s=0.4)), 6 / 30)
    assert len(out) == 2 and (out.states[out.ids == ids[0]] == TrackState.LOST).all()


def test_lost_tracks_are_not_rescued_by_low_scores_but_return_with_high_ones():
    tr = Tracker(cfg())
    for f in range(3):
        tr.update(dets(box(100)), f / 30)
    tid = int(tr.ids[0])
    tr.update(dets(), 3 / 30)
    assert tr.states.tolist() == [TrackState.LOST]
    out = tr.update(dets(box(100, s=0.3)), 4 / 30)
    assert out.states.tolist() == [TrackState.LOST]
    out = tr.update(dets(box(100, s=0.8)), 5 / 30)
    assert out.ids.tolist() == [tid] and out.states.tolist() == [TrackState.CONFIRMED]


def test_confirmed_tracks_win_a_detection_over_tentative_ones():
    tr = Tracker(cfg())
    tr.update(dets(box(100)), 0.0)                     # confirmed at once (first frame)
    out = tr.update(dets(box(100), box(104)), 1 / 30)  # the second box starts a tentative track
    assert sorted(out.states.tolist()) == [TrackState.TENTATIVE, TrackState.CONFIRMED]
    confirmed = int(out.ids[out.states == TrackState.CONFIRMED][0])
    out = tr.update(dets(box(102)), 2 / 30)            # one detection between both: the confirmed track takes it
    assert out.ids[out.det_index == 0].tolist() == [confirmed]
    assert TrackState.TENTATIVE not in out.states.tolist()  # the tentative one missed once: removed


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations([0, 1, 2], 2)))
def test_class_aware_tracker_keeps_classes_apart(a, b):
    tr = Tracker(cfg())
    tr.update(dets(box(100, label=a)), 0.0)
    out = tr.update(dets(box(101, label=b)), 1 / 30)
    assert sorted(out.labels.tolist()) == sorted([a, b]) and len(set(out.ids.tolist())) == 2
    tr = Tracker(cfg(class_aware=False))
    tr.update(dets(box(100, label=a)), 0.0)
    out = tr.update(dets(box(101, label=b)), 1 / 30)
    assert len(out) == 1
