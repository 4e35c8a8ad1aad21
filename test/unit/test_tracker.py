"""Tracker: life cycle, time from stamps (10/15/30 Hz, jitter, resets), and garbage input."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mim_perception.core.config import load_config
from mim_perception.core.errors import BadDetectionsError, ConfigError
from mim_perception.core.tracking.simulate import constant_velocity_scene, frame_stamps
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig, TrackState
from mim_perception.core.types import Detections

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def cfg(**over) -> TrackerConfig:
    return load_config(TrackerConfig, overrides={f"tracker.{k}": v for k, v in over.items()}, prefix="tracker.")


def one(x: float, score: float = 0.9, w: float = 40.0) -> Detections:
    return Detections.create([[x, 100, x + w, 180]], [score], [0])


def test_config_cross_checks_name_the_parameters():
    with pytest.raises(ConfigError, match="low_score"):
        cfg(low_score=0.7)
    with pytest.raises(ConfigError, match="new_track_score"):
        cfg(new_track_score=0.4)


def test_life_cycle_tentative_confirmed_lost_removed():
    tr = Tracker(cfg(min_hits=3, max_lost_time=0.5))
    out = tr.update(one(100), 0.0)
    first_id = int(out.ids[0])
    assert out.states.tolist() == [TrackState.CONFIRMED]  # first frame of a time line confirms at once
    out = tr.update(Detections.create([[100, 100, 140, 180], [500, 100, 540, 180]], [0.9, 0.9], [0, 0]), 0.1)
    new = out.ids[out.ids != first_id]
    assert out.states[out.ids == new[0]].tolist() == [TrackState.TENTATIVE]
    out = tr.update(Detections.create([[100, 100, 140, 180], [500, 100, 540, 180]], [0.9, 0.9], [0, 0]), 0.2)
    assert out.states[out.ids == new[0]].tolist() == [TrackState.TENTATIVE]  # 2 hits < min_hits 3
    out = tr.update(Detections.create([[100, 100, 140, 180], [500, 100, 540, 180]], [0.9, 0.9], [0, 0]), 0.3)
    assert out.states[out.ids == new[0]].tolist() == [TrackState.CONFIRMED]
    assert out.hits[out.ids == new[0]].tolist() == [3] and out.ages[out.ids == new[0]][0] == pytest.approx(0.2)
    out = tr.update(one(100), 0.4)  # the second object is gone
    assert out.states[out.ids == new[0]].tolist() == [TrackState.LOST]
    out = tr.update(one(100), 0.75)  # 0.45 s after its last hit: still kept
    assert new[0] in out.ids
    out = tr.update(one(100), 0.85)  # 0.55 s > max_lost_time: removed
    assert out.ids.tolist() == [first_id]


def test_tentative_track_dies_at_its_first_miss_and_ids_are_never_reused():
    tr = Tracker(cfg())
    tr.update(one(100), 0.0)
    out = tr.update(Detections.create([[100, 100, 140, 180], [600, 0, 640, 80]], [0.9, 0.9], [0, 0]), 0.1)
    assert len(out) == 2
    out = tr.update(one(100), 0.2)
    assert len(out) == 1
    out = tr.update(Detections.create([[100, 100, 140, 180], [600, 0, 640, 80]], [0.9, 0.9], [0, 0]), 0.3)
    assert sorted(out.ids.tolist()) == [1, 3]  # id 2 belonged to the removed tentative track
    assert Tracker(cfg()).update(one(5), 0.0).ids.tolist() == [1]  # per-instance counters


def ground_truth_ids(rate: float, jitter: float, seed: int = 0):
    """GT scene at ``rate`` Hz with crossings; feed its exact boxes (shuffled) with jittered stamps."""
    gt = constant_velocity_scene(12, int(6 * rate), rate, (1280, 720), seed=seed, crossings=3)
    rng = np.random.default_rng(seed)
    stamps = frame_stamps(int(6 * rate), rate, jitter, rng)
    tr = Tracker(cfg())
    assignments: dict[int, set[int]] = {}
    for f, stamp in enumerate(stamps, 1):
        rows = np.nonzero(gt.frames == f)[0]
        rows = rows[rng.permutation(len(rows))]
        d = Detections.create(gt.xyxy()[rows], np.full(len(rows), 0.9), gt.classes[rows])
        out = tr.update(d, float(stamp))
        for tid, di in zip(out.ids.tolist(), out.det_index.tolist(), strict=True):
            if di >= 0:
                assignments.setdefault(int(gt.ids[rows[di]]), set()).add(tid)
    return gt, assignments, tr


@pytest.mark.parametrize("rate", [10.0, 15.0, 30.0])
@pytest.mark.parametrize("jitter", [0.0, 0.2], ids=["exact", "jitter"])
def test_every_object_keeps_one_id_at_any_rate(rate, jitter):
    gt, assignments, tr = ground_truth_ids(rate, jitter / rate)
    assert set(assignments) == set(np.unique(gt.ids).tolist())
    switches = {g: ids for g, ids in assignments.items() if len(ids) > 1}
    assert switches == {}
    assert tr.stats.resets == 0


def fast_object_frames(rate: float, speed: float = 300.0):
    """40-px box at 300 px/s: 30 px per frame at 10 Hz, so consecutive boxes overlap with IoU 0.14."""
    return [(k / rate, one(100 + speed * k / rate)) for k in range(int(2 * rate))]


def test_fast_object_is_tracked_because_dt_comes_from_stamps():
    tr = Tracker(cfg())
    ids = {int(i) for stamp, d in fast_object_frames(10.0) for i in tr.update(d, stamp).confirmed().ids}
    assert ids == {1}
    vx = tr.mean[1, 0, 0]  # velocity of cx, track 0
    assert vx == pytest.approx(300.0, rel=0.1)  # px per second, not per frame


def test_dropped_frames_are_bridged_by_stamp_dt():
    """A 0.5 s hole in a 10 Hz stream: the object moved 150 px (3.75 box widths); prediction over the real dt finds it."""
    tr = Tracker(cfg())
    frames = fast_object_frames(10.0)
    for stamp, d in frames[:10]:
        tr.update(d, stamp)
    stamp = frames[9][0] + 0.5
    out = tr.update(one(100 + 300.0 * stamp), stamp)
    assert out.ids.tolist() == [1] and out.states.tolist() == [TrackState.CONFIRMED] and out.det_index.tolist() == [0]


def test_backwards_stamp_resets_and_says_why():
    tr = Tracker(cfg())
    for k in range(5):
        tr.update(one(100 + k), 100.0 + k / 30)
    out = tr.update(one(100), 99.0)  # bag loop
    assert tr.stats.resets_backwards == 1 and "backwards" in tr.stats.last_reset_reason
    assert out.ids.tolist() == [2] and out.states.tolist() == [TrackState.CONFIRMED]
    tr.update(one(101), 99.0 + 1 / 30)
    assert tr.stats.resets == 1


def test_forward_gap_resets_only_beyond_max_stamp_gap():
    tr = Tracker(cfg(max_stamp_gap=0.5, max_lost_time=1.0))
    tr.update(one(100), 0.0)
    tr.update(one(100), 0.45)
    assert tr.stats.resets == 0 and tr.ids.tolist() == [1]
    tr.update(one(100), 1.2)
    assert tr.stats.resets_gap == 1 and "forward" in tr.stats.last_reset_reason and tr.ids.tolist() == [2]


def test_duplicate_stamps_are_counted_and_harmless():
    tr = Tracker(cfg())
    tr.update(one(100), 1.0)
    out = tr.update(one(100), 1.0)
    out = tr.update(one(100), 1.0)
    assert tr.stats.duplicate_stamps == 2 and tr.stats.resets == 0 and out.ids.tolist() == [1]
    with pytest.raises(BadDetectionsError, match="finite"):
        tr.update(one(100), float("nan"))


def test_invalid_boxes_are_dropped_counted_and_indices_refer_to_the_input():
    tr = Tracker(cfg())
    boxes = [[np.nan, 0, 10, 10], [100, 100, 140, 180], [0, 0, np.inf, 5], [50, 50, 40, 60], [7, 7, 7.5, 9],
             [300, 100, 340, 180]]
    scores = [0.9, 0.9, 0.9, 0.9, 0.9, np.nan]
    out = tr.update(Detections.create(boxes, scores, [0] * 6), 0.0)
    assert tr.stats.dropped_invalid == 5  # NaN, inf, negative width, narrower than min_box_size, NaN score
    assert out.det_index.tolist() == [1]
    out = tr.update(Detections.empty(), 0.1)
    assert out.states.tolist() == [TrackState.LOST] and out.det_index.tolist() == [-1]


def test_thousands_of_detections_in_one_frame():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 4000, (5000, 2))
    d = Detections.create(np.concatenate([xy, xy + rng.uniform(5, 60, (5000, 2))], 1), rng.uniform(0, 1, 5000),
                          rng.integers(0, 5, 5000))
    tr = Tracker(cfg())
    t0 = time.perf_counter()
    for k in range(3):
        out = tr.update(d, k / 30)
    assert time.perf_counter() - t0 < 5.0  # generous: a bound, not a benchmark
    assert len(np.unique(out.ids)) == len(out) > 1000
    assert (out.det_index[out.states == TrackState.CONFIRMED] >= 0).all()


def test_runaway_input_is_capped_and_counted():
    """Hundreds of mutually overlapping boxes (a detector without NMS): bounded work, the excess counted."""
    rng = np.random.default_rng(2)
    n = 600
    boxes = np.tile([[10.0, 10.0, 500.0, 400.0]], (n, 1)) + rng.uniform(0, 5, (n, 4))
    d = Detections.create(boxes, rng.uniform(0.6, 1.0, n), np.zeros(n))
    tr = Tracker(cfg(max_detections=400, max_candidates=8))
    t0 = time.perf_counter()
    for k in range(3):
        out = tr.update(d, k / 30)
    assert time.perf_counter() - t0 < 10.0  # generous: a bound, not a benchmark
    assert tr.stats.dropped_excess == 3 * 200 and tr.stats.dropped_invalid == 0
    kept = out.det_index[out.det_index >= 0]
    assert len(kept) == 400 and (d.scores[kept] >= np.sort(d.scores)[-400]).all()  # the best-scoring ones


floats = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.sampled_from([0.0, -1.0, 1e-45, 3e38, -3e38])


@st.composite
def garbage_frames(draw):
    frames = []
    stamp = draw(st.floats(-1e6, 1e6))
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(0, 12))
        sane = draw(hnp.arrays(np.float32, (n, 4), elements=st.floats(0, 300, width=32)))
        sane[:, 2:] += sane[:, :2]  # some valid boxes among the garbage, so tracks exist
        wild = draw(hnp.arrays(np.float32, (n, 4), elements=floats))
        pick = draw(hnp.arrays(np.bool_, (n, 1)))
        boxes = np.where(pick, wild, sane)
        scores = draw(hnp.arrays(np.float32, (n,), elements=floats | st.floats(0, 1, width=32)))
        labels = draw(hnp.arrays(np.int32, (n,), elements=st.integers(-3, 3)))
        stamp += draw(st.sampled_from([0.0, 1 / 30, 0.1, -0.5, 10.0, 1e-9]))
        frames.append((Detections(boxes, scores, labels), stamp))
    return frames


@FUZZ
@given(garbage_frames())
def test_garbage_never_crashes_and_every_drop_is_counted(frames):
    tr = Tracker(cfg())
    expected_drops = 0
    for d, stamp in frames:
        out = tr.update(d, stamp)
        b = d.boxes.astype(np.float64)
        with np.errstate(invalid="ignore"):
            big = ((b[:, 2] - b[:, 0]) >= 1.0) & ((b[:, 3] - b[:, 1]) >= 1.0)  # min_box_size 1 px
        expected_drops += int(np.count_nonzero(~(d.valid_mask() & big)))
        assert tr.stats.dropped_invalid == expected_drops
        k = len(out)
        assert out.boxes.shape == (k, 4) and out.velocities.shape == (k, 2)
        assert all(len(getattr(out, f)) == k for f in ("scores", "labels", "states", "hits", "ages", "det_index"))
        assert len(np.unique(out.ids)) == k
        assert ((out.det_index >= -1) & (out.det_index < len(d))).all()
        matched = out.det_index[out.det_index >= 0]
        assert len(np.unique(matched)) == len(matched) and d.valid_mask()[matched].all()
