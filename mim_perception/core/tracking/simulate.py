"""Detections simulated from ground-truth tracks with a seeded noise model (for `evaluate-tracking`, tests, bench).

Noise model: box jitter proportional to box size, misses (more likely under occlusion), scores that fall
with visibility (occluded objects come out as *low-score* detections — the case ByteTrack's second stage
exists for), Poisson false positives, and header-stamp jitter. Same seed, same detections.

``constant_velocity_scene`` makes a small ground-truth sequence (objects at constant velocity, with
crossings and occlusions) for tests and the benchmark when no recorded/generated sequence is at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mim_perception.core.config import rng
from mim_perception.core.types import Detections


@dataclass(frozen=True)
class NoiseModel:
    PARAM_FILE: ClassVar[str] = "tracker.param.yaml"
    seed: int = field(metadata=rng(0, 2**32 - 1))
    box_jitter: float = field(metadata=rng(0.0, 1.0, unit="fraction of box size"))
    miss_rate: float = field(metadata=rng(0.0, 1.0))
    occluded_miss_rate: float = field(metadata=rng(0.0, 1.0))
    score_visible: float = field(metadata=rng(0.0, 1.0))
    score_occluded: float = field(metadata=rng(0.0, 1.0))
    score_std: float = field(metadata=rng(0.0, 1.0))
    fp_per_frame: float = field(metadata=rng(0.0, 10000.0))
    fp_score_min: float = field(metadata=rng(0.0, 1.0))
    fp_score_max: float = field(metadata=rng(0.0, 1.0))
    stamp_jitter: float = field(metadata=rng(0.0, 1.0, unit="s"))

    def __post_init__(self) -> None:
        if self.fp_score_min > self.fp_score_max:
            raise ValueError("simulate.fp_score_min must not exceed simulate.fp_score_max")


@dataclass(frozen=True)
class MotTable:
    """Rows of a MOTChallenge file: frame, id, box (x, y, w, h), conf, class, visibility (frames are 1-based)."""

    frames: np.ndarray    # R int64
    ids: np.ndarray       # R int64
    boxes: np.ndarray     # R×4 float64 x, y, w, h (top-left corner, pixels)
    conf: np.ndarray      # R float64 (ground truth: 0 = ignore this row)
    classes: np.ndarray   # R int64
    vis: np.ndarray       # R float64 visibility in [0, 1], -1 = unknown

    def __len__(self) -> int:
        return len(self.frames)

    def select(self, mask: np.ndarray) -> MotTable:
        return MotTable(self.frames[mask], self.ids[mask], self.boxes[mask], self.conf[mask], self.classes[mask],
                        self.vis[mask])

    def xyxy(self) -> np.ndarray:
        b = self.boxes
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def frame_stamps(num_frames: int, frame_rate: float, jitter: float, rng_: np.random.Generator) -> np.ndarray:
    """Stamps (s) of frames 1..num_frames: nominal times plus jitter, kept strictly increasing."""
    period = 1.0 / frame_rate
    noise = np.clip(rng_.normal(0.0, jitter, num_frames), -0.4 * period, 0.4 * period) if jitter > 0 else 0.0
    return np.arange(num_frames) * period + noise


def simulate_detections(gt: MotTable, noise: NoiseModel, num_frames: int, frame_rate: float,
                        image_size: tuple[int, int]) -> list[tuple[float, Detections]]:
    """(stamp, detections) for frames 1..num_frames; detections are shuffled like a detector's output."""
    r = np.random.default_rng(noise.seed)
    width, height = image_size
    stamps = frame_stamps(num_frames, frame_rate, noise.stamp_jitter, r)
    vis = np.where(gt.vis < 0, 1.0, np.clip(gt.vis, 0.0, 1.0))
    n = len(gt)
    detected = r.random(n) >= noise.miss_rate + noise.occluded_miss_rate * (1.0 - vis)
    x, y, w, h = gt.boxes.T
    cx = x + w / 2 + r.normal(0, 1, n) * noise.box_jitter * w
    cy = y + h / 2 + r.normal(0, 1, n) * noise.box_jitter * h
    w2 = w * np.exp(r.normal(0, noise.box_jitter, n))
    h2 = h * np.exp(r.normal(0, noise.box_jitter, n))
    boxes = np.stack([cx - w2 / 2, cy - h2 / 2, cx + w2 / 2, cy + h2 / 2], axis=1)
    mean_score = noise.score_occluded + (noise.score_visible - noise.score_occluded) * vis
    scores = np.clip(mean_score + r.normal(0, noise.score_std, n), 0.01, 1.0)
    classes = np.unique(gt.classes) if n else np.array([1])
    out: list[tuple[float, Detections]] = []
    order = np.argsort(gt.frames, kind="stable")
    bounds = np.searchsorted(gt.frames[order], np.arange(1, num_frames + 2))
    for f in range(num_frames):
        rows = order[bounds[f]:bounds[f + 1]]
        rows = rows[detected[rows]]
        k = int(r.poisson(noise.fp_per_frame)) if noise.fp_per_frame > 0 else 0
        if k and n:
            pick = r.integers(0, n, k)
            fw, fh = gt.boxes[pick, 2], gt.boxes[pick, 3]
            fx, fy = r.uniform(0, 1, k) * np.maximum(width - fw, 1), r.uniform(0, 1, k) * np.maximum(height - fh, 1)
            fp_boxes = np.stack([fx, fy, fx + fw, fy + fh], axis=1)
            fp_scores = r.uniform(noise.fp_score_min, noise.fp_score_max, k)
            fp_labels = r.choice(classes, k)
        else:
            fp_boxes, fp_scores, fp_labels = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        b = np.concatenate([boxes[rows], fp_boxes])
        s = np.concatenate([scores[rows], fp_scores])
        lab = np.concatenate([gt.classes[rows], fp_labels])
        perm = r.permutation(len(b))
        out.append((float(stamps[f]), Detections.create(b[perm], s[perm], lab[perm])))
    return out


def _visibility(xyxy: np.ndarray) -> np.ndarray:
    """Fraction of each box not covered by boxes in front of it (lower bottom edge = closer, road camera)."""
    if len(xyxy) == 0:
        return np.zeros(0)
    iw = np.minimum(xyxy[:, None, 2], xyxy[None, :, 2]) - np.maximum(xyxy[:, None, 0], xyxy[None, :, 0])
    ih = np.minimum(xyxy[:, None, 3], xyxy[None, :, 3]) - np.maximum(xyxy[:, None, 1], xyxy[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    in_front = xyxy[None, :, 3] > xyxy[:, None, 3]
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    covered = (inter * in_front).sum(axis=1) / np.maximum(area, 1e-9)
    return np.clip(1.0 - covered, 0.0, 1.0)


def constant_velocity_scene(n_objects: int, num_frames: int, frame_rate: float, image_size: tuple[int, int],
                            seed: int, crossings: int = 2) -> MotTable:
    """Ground truth of objects moving at constant velocity (px/s) with ``crossings`` head-on pairs.

    Class 1 = car-sized boxes, class 2 = pedestrian-sized boxes. Objects appear and disappear during the
    sequence; rows outside the image are left out; visibility comes from occlusion by boxes in front.
    """
    r = np.random.default_rng(seed)
    width, height = image_size
    cls = r.choice([1, 2], n_objects, p=[0.6, 0.4])
    w = np.where(cls == 1, r.uniform(50, 130, n_objects), r.uniform(14, 30, n_objects))
    h = np.where(cls == 1, w * r.uniform(0.6, 0.9, n_objects), w * r.uniform(2.2, 3.0, n_objects))
    x0 = r.uniform(0, width, n_objects)
    y0 = r.uniform(0.3 * height, 0.9 * height, n_objects)
    vx = r.normal(0, 1.5, n_objects) * w  # px/s in proportion to size, as perspective makes it (widths per second)
    vy = r.normal(0, 0.2, n_objects) * h
    start = r.integers(1, max(2, int(0.5 * num_frames)), n_objects)
    life = r.integers(max(2, num_frames // 3), num_frames + 1, n_objects)
    start[: min(n_objects, n_objects // 2 + 1)] = 1  # half the objects are there from the first frame
    mid = num_frames // 2
    for p in range(min(crossings, n_objects // 2)):  # pairs that meet head-on in the middle of the sequence
        i, j = 2 * p, 2 * p + 1
        cls[j], w[j], h[j] = cls[i], w[i] * 0.95, h[i] * 0.95
        speed = r.uniform(1.0, 2.0) * w[i]
        t_mid = (mid - 1) / frame_rate
        x_meet = r.uniform(0.3, 0.7) * width
        y0[j] = y0[i] + 0.1 * h[i]
        vx[i], vx[j], vy[i], vy[j] = speed, -speed, 0.0, 0.0
        x0[i], x0[j] = x_meet - speed * t_mid, x_meet + speed * t_mid
        start[i] = start[j] = 1
        life[i] = life[j] = num_frames
    parts = []
    for f in range(1, num_frames + 1):
        alive = (f >= start) & (f < start + life)
        t = (f - 1) / frame_rate
        cx, cy = x0 + vx * t, y0 + vy * t
        idx = np.nonzero(alive & (cx > 0) & (cx < width) & (cy > 0) & (cy < height))[0]
        xyxy = np.stack([cx[idx] - w[idx] / 2, cy[idx] - h[idx] / 2, cx[idx] + w[idx] / 2, cy[idx] + h[idx] / 2], axis=1)
        xyxy = np.clip(xyxy, 0, [width, height, width, height])
        big = ((xyxy[:, 2:] - xyxy[:, :2]) >= 2).all(axis=1)  # boxes clipped to a sliver at the border are left out
        idx, xyxy = idx[big], xyxy[big]
        one = np.ones(len(idx))
        parts.append(np.column_stack([f * one, idx + 1, xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2], one, cls[idx],
                                      _visibility(xyxy)]))
    a = np.concatenate(parts) if parts else np.zeros((0, 9))
    return MotTable(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6], a[:, 6], a[:, 7].astype(np.int64), a[:, 8])
