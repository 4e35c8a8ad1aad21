"""ByteTrack-style multi-object tracker on header stamps: predict -> associate -> update -> prune -> spawn.

Tracks live in flat arrays (struct of arrays), so one frame is a fixed number of vectorised numpy calls.
Association runs in three stages (ByteTrack): (1) confirmed + lost tracks vs high-score detections,
(2) confirmed tracks still unmatched vs low-score detections — this rescues objects whose score dropped
under occlusion instead of losing them —, (3) tentative tracks vs the high-score detections left, on
buffered boxes (C-BIoU) because a track seen once has no velocity yet.
Life cycle: tentative -> confirmed after ``min_hits`` hits -> lost when unmatched -> removed after
``max_lost_time`` seconds (a tentative track is removed at its first miss). Ids come from a per-instance
counter and are never reused, not even across resets.

Time: ``dt`` is the difference of header stamps. A stamp that goes backwards (bag loop, simulator reset) or
jumps forward by more than ``max_stamp_gap`` resets the tracker; ``stats`` counts resets with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

import numpy as np

from mim_perception.core.config import rng
from mim_perception.core.errors import BadDetectionsError
from mim_perception.core.tracking.association import associate, candidates, match_stage
from mim_perception.core.tracking.kalman import BoxKalmanFilter, KalmanConfig, xyah_to_xyxy, xyxy_to_xyah
from mim_perception.core.types import Detections


class TrackState(IntEnum):
    """Same numbers as mim_perception_msgs/Track."""

    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2


# plain ints for the per-frame array comparisons (an IntEnum operand costs ~5x more per numpy call)
_TENTATIVE, _CONFIRMED, _LOST = int(TrackState.TENTATIVE), int(TrackState.CONFIRMED), int(TrackState.LOST)


@dataclass(frozen=True)
class TrackerConfig:
    PARAM_FILE: ClassVar[str] = "tracker.param.yaml"
    high_score: float = field(metadata=rng(0.0, 1.0))
    low_score: float = field(metadata=rng(0.0, 1.0))
    new_track_score: float = field(metadata=rng(0.0, 1.0))
    match_iou_high: float = field(metadata=rng(0.0, 1.0))
    match_iou_low: float = field(metadata=rng(0.0, 1.0))
    match_iou_tentative: float = field(metadata=rng(0.0, 1.0))
    tentative_buffer: float = field(metadata=rng(0.0, 10.0))
    center_distance_weight: float = field(metadata=rng(0.0, 10.0))
    class_aware: bool
    min_hits: int = field(metadata=rng(1, 1000, unit="hits"))
    max_lost_time: float = field(metadata=rng(0.0, 3600.0, unit="s"))
    max_stamp_gap: float = field(metadata=rng(0.0, 3600.0, unit="s"))
    min_box_size: float = field(metadata=rng(0.0, 1e6, unit="px"))
    max_detections: int = field(metadata=rng(1, 10**6))
    max_candidates: int = field(metadata=rng(1, 10**4))
    kalman: KalmanConfig

    def __post_init__(self) -> None:
        if self.low_score > self.high_score:
            raise ValueError("tracker.low_score must not exceed tracker.high_score")
        if self.new_track_score < self.high_score:
            raise ValueError("tracker.new_track_score must be at least tracker.high_score (only unmatched high-score "
                             "detections start tracks)")


@dataclass
class TrackerStats:
    """Counters for diagnostics; monotonic over the tracker's life."""

    frames: int = 0
    detections: int = 0
    dropped_invalid: int = 0
    dropped_excess: int = 0
    duplicate_stamps: int = 0
    resets_backwards: int = 0
    resets_gap: int = 0
    last_reset_reason: str = ""
    tracks_created: int = 0

    @property
    def resets(self) -> int:
        return self.resets_backwards + self.resets_gap


@dataclass(frozen=True)
class Tracks:
    """K tracks after a frame; ``det_index`` is the index into the caller's detections (-1: not matched now)."""

    ids: np.ndarray          # K int64
    boxes: np.ndarray        # K×4 float32 xyxy, filtered (predicted when not matched this frame)
    velocities: np.ndarray   # K×2 float32 box-centre velocity, px/s
    scores: np.ndarray       # K float32, score of the last associated detection
    labels: np.ndarray       # K int32
    states: np.ndarray       # K uint8 (TrackState)
    hits: np.ndarray         # K int32
    ages: np.ndarray         # K float32 seconds since birth
    det_index: np.ndarray    # K int64

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, mask: np.ndarray) -> Tracks:
        return Tracks(*(getattr(self, f)[mask] for f in _TRACK_FIELDS))

    def confirmed(self) -> Tracks:
        """Tracks confirmed and matched in this frame (what evaluation and ~/out/detections report)."""
        return self.select(self.states == TrackState.CONFIRMED)


_TRACK_FIELDS = ("ids", "boxes", "velocities", "scores", "labels", "states", "hits", "ages", "det_index")


def _best(ok: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """The mask ``ok`` reduced to its ``k`` highest scores."""
    idx = ok.nonzero()[0]
    top = idx.take(np.argpartition(-scores.take(idx), k - 1)[:k])
    out = np.zeros_like(ok)
    out[top] = True
    return out


def _buffered(boxes: np.ndarray, b: float) -> np.ndarray:
    """xyxy boxes grown by ``b`` × width/height on every side (C-BIoU, Yang et al. 2023)."""
    if b == 0.0:
        return boxes
    grow = (boxes[:, 2:] - boxes[:, :2]) * b
    return np.concatenate([boxes[:, :2] - grow, boxes[:, 2:] + grow], axis=1)


# Per-track state lives in two tables (struct of arrays, one column per track) so that removing or adding
# tracks is two numpy calls, not one per field: float rows = Kalman mean (2×4, component-major, see kalman.py),
# covariance (3×4), birth stamp, last-hit stamp, last score; int rows = id, label, state, hits.
_MEAN, _COV, _BORN, _SEEN, _SCORE, _NF = slice(0, 8), slice(8, 20), 20, 21, 22, 23
_ID, _LABEL, _STATE, _HITS, _NI = 0, 1, 2, 3, 4


class Tracker:
    """Per-instance tracker: ``update(detections, stamp_s) -> Tracks`` (all live tracks, every state)."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.kf = BoxKalmanFilter(cfg.kalman)
        self.stats = TrackerStats()
        self._next_id = 1
        self._last_stamp: float | None = None
        self._clear()

    # -- state ------------------------------------------------------------------------------------
    def _clear(self) -> None:
        self._f = np.zeros((_NF, 0))
        self._i = np.zeros((_NI, 0), np.int64)

    def __len__(self) -> int:
        return self._i.shape[1]

    # read-only views, for tests and introspection
    @property
    def mean(self) -> np.ndarray:
        """2×4×N Kalman mean (components; velocities)."""
        return self._f[_MEAN].reshape(2, 4, -1)

    @property
    def cov(self) -> np.ndarray:
        """3×4×N Kalman covariance blocks."""
        return self._f[_COV].reshape(3, 4, -1)

    @property
    def ids(self) -> np.ndarray:
        return self._i[_ID]

    @property
    def states(self) -> np.ndarray:
        return self._i[_STATE]

    def reset(self, reason: str = "") -> None:
        """Drop every track and forget the time line (ids keep counting up)."""
        self._clear()
        self._last_stamp = None
        if reason:
            self.stats.last_reset_reason = reason

    def _keep(self, mask: np.ndarray) -> None:
        self._f = self._f.compress(mask, axis=1)
        self._i = self._i.compress(mask, axis=1)

    # -- time -------------------------------------------------------------------------------------
    def _advance_time(self, stamp: float) -> tuple[float, bool]:
        """-> (dt seconds, first frame of a time line). Resets on backwards stamps and long gaps."""
        if not math.isfinite(stamp):
            raise BadDetectionsError(f"stamp must be a finite number of seconds, got {stamp!r}")
        last = self._last_stamp
        if last is not None and stamp < last:
            self.stats.resets_backwards += 1
            self.reset(f"stamp went backwards by {last - stamp:.3f} s")
            last = None
        elif last is not None and stamp - last > self.cfg.max_stamp_gap:
            self.stats.resets_gap += 1
            self.reset(f"stamp jumped forward by {stamp - last:.3f} s (> max_stamp_gap {self.cfg.max_stamp_gap:g} s)")
            last = None
        self._last_stamp = stamp
        if last is None:
            return 0.0, True
        if stamp == last:
            self.stats.duplicate_stamps += 1
        return stamp - last, False

    # -- the frame --------------------------------------------------------------------------------
    def update(self, detections: Detections, stamp_s: float) -> Tracks:
        """Process one frame's detections taken at ``stamp_s`` (header stamp, seconds)."""
        dt, first = self._advance_time(float(stamp_s))
        # Garbage input (boxes at 1e38 px) may overflow; such tracks are dropped in _apply, not warned about.
        with np.errstate(all="ignore"):
            # Detections.valid_mask() plus min size, in float64 (no overflow) and column arithmetic (numpy
            # reductions along a short axis, e.g. .all(axis=1), cost ~10x more)
            boxes, scores, labels = detections.boxes.astype(np.float64), detections.scores, detections.labels
            w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
            min_size = self.cfg.min_box_size
            # finite x1, y1, w, h and score (so x2, y2 too); positive size, at least min_box_size (NaN fails both)
            size_ok = (w >= min_size) & (h >= min_size) if min_size > 0 else (w > 0) & (h > 0)
            ok = np.isfinite(boxes[:, 0] + boxes[:, 1] + w + h + scores) & size_ok
            n_ok = int(np.count_nonzero(ok))
            self.stats.frames += 1
            self.stats.detections += len(detections)
            self.stats.dropped_invalid += len(detections) - n_ok
            if n_ok > self.cfg.max_detections:  # safety valve for runaway input: keep the best-scoring ones
                ok = _best(ok, scores, self.cfg.max_detections)
                self.stats.dropped_excess += n_ok - self.cfg.max_detections
                n_ok = self.cfg.max_detections
            if n_ok < len(detections):
                boxes, scores, labels = boxes.compress(ok, axis=0), scores.compress(ok), labels.compress(ok)

            self._predict(dt)
            match = self._associate(boxes, scores, labels)
            z = xyxy_to_xyah(boxes)  # 4×M measurements, for updates and new tracks alike
            match = self._apply(match, z, scores, stamp_s)
            match = self._spawn(match, z, scores, labels, stamp_s, first)
            if 0 < n_ok < len(detections):  # report indices into the caller's detections
                match = np.where(match >= 0, ok.nonzero()[0][match], -1)
            return self._output(match, stamp_s)

    def _predict(self, dt: float) -> None:
        if len(self) == 0 or dt == 0.0:
            return
        f = self._f
        # ByteTrack: a box that is not observed keeps its size instead of growing/shrinking without bound
        f[7] *= self._i[_STATE] == _CONFIRMED  # row 7 = velocity of h
        mean, cov = self.kf.predict(self.mean, self.cov, dt)
        f[_MEAN], f[_COV] = mean.reshape(8, -1), cov.reshape(12, -1)

    def _associate(self, det_boxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray) -> np.ndarray:
        """-> per-track index of its detection in ``det_boxes`` (-1 when unmatched)."""
        cfg = self.cfg
        match = np.empty(len(self), np.int64)  # -1: unmatched (empty + fill: np.full is a Python-level wrapper)
        match.fill(-1)
        if len(self) == 0 or len(det_boxes) == 0:
            return match
        track_boxes = xyah_to_xyxy(self._f[0:4])
        labels, states, hits = self._i[_LABEL], self._i[_STATE], self._i[_HITS]
        high = det_scores >= cfg.high_score
        det_used = np.zeros(len(det_boxes), bool)
        # Stages 1 and 2 share one IoU computation over all overlapping pairs and only select edges.
        c = candidates(track_boxes, labels, det_boxes, det_labels, cfg.class_aware, cfg.center_distance_weight)
        if len(c.rows):
            state, score = states.take(c.rows), det_scores.take(c.cols)
            edge_high = high.take(c.cols)
            ok = (state != _TENTATIVE) & edge_high
            if ok.any():
                ti, di = match_stage(c, ok, cfg.match_iou_high, cfg.center_distance_weight, cfg.max_candidates)
                match[ti], det_used[di] = di, True
            ok = (state == _CONFIRMED) & ~edge_high & (score >= cfg.low_score)
            if ok.any():
                ok &= (match.take(c.rows) < 0) & ~det_used.take(c.cols)
                if ok.any():
                    ti, di = match_stage(c, ok, cfg.match_iou_low, cfg.center_distance_weight, cfg.max_candidates)
                    match[ti], det_used[di] = di, True
        # Stage 3: tentative tracks (and those seen only once, e.g. born confirmed on a first frame) vs the
        # high-score detections left. A track seen once has no velocity, so a fast object may not overlap its next
        # box at a low frame rate: both sides get C-BIoU's buffer (grown by tentative_buffer × size on each side).
        tracks = (((states == _TENTATIVE) | (hits == 1)) & (match < 0)).nonzero()[0]
        if len(tracks):
            dets = (high & ~det_used).nonzero()[0]
            if len(dets):
                b = cfg.tentative_buffer
                ti, di = associate(_buffered(track_boxes.take(tracks, axis=0), b), labels.take(tracks),
                                   _buffered(det_boxes.take(dets, axis=0), b), det_labels.take(dets),
                                   cfg.match_iou_tentative, cfg.class_aware, cfg.center_distance_weight,
                                   cfg.max_candidates)
                match[tracks.take(ti)] = dets.take(di)
        return match

    def _apply(self, match: np.ndarray, z: np.ndarray, det_scores: np.ndarray, stamp: float) -> np.ndarray:
        """Kalman update of matched tracks, state changes, pruning -> ``match`` of the surviving tracks."""
        if len(self) == 0:
            return match
        f, i = self._f, self._i
        hit = match >= 0
        states = i[_STATE]  # a view: the state changes below write into the table
        if z.shape[1]:
            m = np.maximum(match, 0)  # unmatched tracks read detection 0 and get zero gain
            mean, cov = self.kf.update(self.mean, self.cov, z.take(m, axis=1), hit)
            f[_MEAN], f[_COV] = mean.reshape(8, -1), cov.reshape(12, -1)
            i[_HITS] += hit
            np.copyto(f[_SEEN], stamp, where=hit)
            np.copyto(f[_SCORE], det_scores.take(m), where=hit)
            # a lost track found again is confirmed at once; a tentative one once it has enough hits
            np.copyto(states, _CONFIRMED, where=hit & ((states == _LOST) | (i[_HITS] >= self.cfg.min_hits)))
        miss = ~hit
        np.copyto(states, _LOST, where=miss & (states == _CONFIRMED))
        gone = miss & ((states == _TENTATIVE) | (stamp - f[_SEEN] > self.cfg.max_lost_time))
        # Non-finite state (overflow from garbage boxes) or a collapsed box: the track is useless, drop it.
        # One sum is finite iff every term is (or it overflowed, which only garbage does): per-track check only then.
        if not (np.isfinite(f[:_COV.stop].sum()) and f[3].min() > 0):
            gone |= ~np.isfinite(f[:_COV.stop]).all(axis=0) | ~(f[3] > 0)
        if not gone.any():
            return match
        keep = ~gone
        self._keep(keep)
        return match.compress(keep)

    def _spawn(self, match: np.ndarray, z: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray, stamp: float,
               first: bool) -> np.ndarray:
        """New tracks from unmatched high-score detections -> ``match`` extended by the new tracks."""
        free = det_scores >= self.cfg.new_track_score
        free[match[match >= 0]] = False
        new = free.nonzero()[0]
        n = len(new)
        if n == 0:
            return match
        mean, cov = self.kf.initiate(z.take(new, axis=1))
        f = np.empty((_NF, n))
        f[_MEAN], f[_COV] = mean.reshape(8, n), cov.reshape(12, n)
        f[_BORN:_SEEN + 1] = stamp
        f[_SCORE] = det_scores.take(new)
        i = np.empty((_NI, n), np.int64)
        i[_ID] = np.arange(self._next_id, self._next_id + n)
        i[_LABEL] = det_labels.take(new)
        # The first frame of a time line has nothing to confirm against: start confirmed, as ByteTrack does.
        i[_STATE] = _CONFIRMED if first or self.cfg.min_hits <= 1 else _TENTATIVE
        i[_HITS] = 1
        self._f, self._i = np.concatenate([self._f, f], axis=1), np.concatenate([self._i, i], axis=1)
        self._next_id += n
        self.stats.tracks_created += n
        return np.concatenate([match, new])

    def _output(self, match: np.ndarray, stamp: float) -> Tracks:
        f, i = self._f, self._i.copy()  # the tables change in place next frame; the output must not
        return Tracks(
            ids=i[_ID], boxes=xyah_to_xyxy(f[0:4]).astype(np.float32), velocities=f[4:6].T.astype(np.float32),
            scores=f[_SCORE].astype(np.float32), labels=i[_LABEL].astype(np.int32), states=i[_STATE].astype(np.uint8),
            hits=i[_HITS].astype(np.int32), ages=(stamp - f[_BORN]).astype(np.float32), det_index=match,
        )

    def counts(self) -> dict[str, int]:
        """Live tracks per state, for diagnostics."""
        c = np.bincount(self._i[_STATE], minlength=3)
        return {"tentative": int(c[_TENTATIVE]), "confirmed": int(c[_CONFIRMED]), "lost": int(c[_LOST])}
