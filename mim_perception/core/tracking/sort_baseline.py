"""SORT (Bewley et al. 2016) as the baseline `evaluate-tracking` measures the tracker against.

One association stage: high-score detections vs all tracks, IoU cost, optimal assignment, matches below
``iou_threshold`` rejected. Life cycle in frames as in SORT: a track dies after ``max_age`` frames without a
match and is reported only while matched with a hit streak of ``min_hits`` (or during the first ``min_hits``
frames). It runs on the same Kalman filter and IoU/assignment code as the tracker, so a comparison measures
the association and life-cycle logic, not a different motion model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mim_perception.core.config import rng
from mim_perception.core.tracking.association import associate
from mim_perception.core.tracking.kalman import BoxKalmanFilter, KalmanConfig, xyah_to_xyxy, xyxy_to_xyah
from mim_perception.core.tracking.tracker import Tracks, TrackState
from mim_perception.core.types import Detections


@dataclass(frozen=True)
class SortConfig:
    PARAM_FILE: ClassVar[str] = "tracker.param.yaml"
    score_threshold: float = field(metadata=rng(0.0, 1.0))
    iou_threshold: float = field(metadata=rng(0.0, 1.0))
    max_age: int = field(metadata=rng(0, 100000, unit="frames"))
    min_hits: int = field(metadata=rng(0, 100000, unit="frames"))
    class_aware: bool


class SortTracker:
    def __init__(self, cfg: SortConfig, kalman: KalmanConfig) -> None:
        self.cfg = cfg
        self.kf = BoxKalmanFilter(kalman)
        self._next_id = 1
        self._frame = 0
        self._last: float | None = None
        self.mean = np.zeros((2, 4, 0))
        self.cov = np.zeros((3, 4, 0))
        self.ids = np.zeros(0, np.int64)
        self.labels = np.zeros(0, np.int32)
        self.scores = np.zeros(0, np.float32)
        self.hits = np.zeros(0, np.int32)
        self.streak = np.zeros(0, np.int32)
        self.since_update = np.zeros(0, np.int32)
        self.born = np.zeros(0)

    def update(self, detections: Detections, stamp_s: float) -> Tracks:
        cfg = self.cfg
        dets, _ = detections.sanitized()
        dets = dets.select(dets.scores >= cfg.score_threshold)
        self._frame += 1
        dt = 0.0 if self._last is None else max(0.0, stamp_s - self._last)
        self._last = stamp_s
        with np.errstate(over="ignore", invalid="ignore"):
            self.mean, self.cov = self.kf.predict(self.mean, self.cov, dt)
        ok = np.isfinite(self.mean).all(axis=(0, 1)) & (self.mean[0, 3] > 0)
        self._keep(ok)
        # SORT: a track that was not matched last frame loses its hit streak
        self.streak[self.since_update > 0] = 0
        self.since_update += 1

        boxes = dets.boxes.astype(np.float64)
        ti, di = associate(xyah_to_xyxy(self.mean[0]), self.labels, boxes, dets.labels, cfg.iou_threshold, cfg.class_aware)
        if len(ti):
            with np.errstate(over="ignore", invalid="ignore"):
                self.mean[:, :, ti], self.cov[:, :, ti] = self.kf.update(self.mean[:, :, ti], self.cov[:, :, ti],
                                                                         xyxy_to_xyah(boxes[di]))
            self.hits[ti] += 1
            self.streak[ti] += 1
            self.since_update[ti] = 0
            self.scores[ti] = dets.scores[di]
        used = np.zeros(len(dets), bool)
        used[di] = True
        new = np.nonzero(~used)[0]
        if len(new):
            mean, cov = self.kf.initiate(xyxy_to_xyah(boxes[new]))
            n = len(new)
            self.mean, self.cov = np.concatenate([self.mean, mean], axis=2), np.concatenate([self.cov, cov], axis=2)
            self.ids = np.concatenate([self.ids, np.arange(self._next_id, self._next_id + n, dtype=np.int64)])
            self._next_id += n
            self.labels = np.concatenate([self.labels, dets.labels[new]])
            self.scores = np.concatenate([self.scores, dets.scores[new]])
            self.hits = np.concatenate([self.hits, np.ones(n, np.int32)])
            self.streak = np.concatenate([self.streak, np.ones(n, np.int32)])
            self.since_update = np.concatenate([self.since_update, np.zeros(n, np.int32)])
            self.born = np.concatenate([self.born, np.full(n, stamp_s)])
        self._keep(self.since_update <= cfg.max_age)

        reported = (self.since_update == 0) & ((self.streak >= cfg.min_hits) | (self._frame <= cfg.min_hits))
        states = np.where(reported, TrackState.CONFIRMED,
                          np.where(self.since_update > 0, TrackState.LOST, TrackState.TENTATIVE)).astype(np.uint8)
        return Tracks(ids=self.ids.copy(), boxes=xyah_to_xyxy(self.mean[0]).astype(np.float32),
                      velocities=self.mean[1, :2].T.astype(np.float32), scores=self.scores.copy(), labels=self.labels.copy(),
                      states=states, hits=self.hits.copy(), ages=(stamp_s - self.born).astype(np.float32),
                      det_index=np.full(len(self.ids), -1, np.int64))

    def _keep(self, mask: np.ndarray) -> None:
        self.mean = self.mean[:, :, mask]
        self.cov = self.cov[:, :, mask]
        for name in ("ids", "labels", "scores", "hits", "streak", "since_update", "born"):
            setattr(self, name, getattr(self, name)[mask])
