"""Per-frame data shared by the pipeline, tracker and tools: numpy only, no ROS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """N detections in camera pixels: ``boxes`` N×4 float32 xyxy, ``scores`` N float32, ``labels`` N int32."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(f"Detections: inconsistent shapes boxes {self.boxes.shape}, scores {self.scores.shape}, "
                             f"labels {self.labels.shape}")

    @classmethod
    def create(cls, boxes: object, scores: object, labels: object) -> Detections:
        return cls(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(labels, np.int32).reshape(-1))

    @classmethod
    def empty(cls) -> Detections:
        return cls.create(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.boxes)

    def valid_mask(self) -> np.ndarray:
        """True where the box is finite with positive width/height and the score is finite."""
        b = self.boxes
        finite = np.isfinite(b).all(axis=1) & np.isfinite(self.scores)
        with np.errstate(invalid="ignore"):
            return finite & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask], self.labels[mask])

    def sanitized(self) -> tuple[Detections, int]:
        """(valid detections, number dropped): invalid boxes are never passed on silently."""
        ok = self.valid_mask()
        dropped = int(len(self) - ok.sum())
        return (self if dropped == 0 else self.select(ok)), dropped
