"""core.tracking.Tracks <-> mim_perception_msgs/TrackArray and vision_msgs/Detection2DArray; class names <-> labels."""

from __future__ import annotations

import numpy as np
from mim_perception_msgs.msg import Track, TrackArray
from vision_msgs.msg import Detection2DArray

from mim_perception.core.tracking.tracker import Tracks
from mim_perception.ros.detection_msgs import arrays_to_detections


class ClassVocabulary:
    """Per-node mapping between message class names (strings) and the tracker's int32 labels.

    Labels are handed out in order of first appearance; the mapping only grows, so a label keeps its name
    for the node's lifetime (the tracker compares labels for class-aware gating).
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._names)

    def labels(self, names: list[str]) -> np.ndarray:
        ids = self._ids
        for n in names:
            if n not in ids:
                ids[n] = len(self._names)
                self._names.append(n)
        return np.fromiter((ids[n] for n in names), np.int32, len(names))

    def name(self, label: int) -> str:
        return self._names[label] if 0 <= label < len(self._names) else str(label)


def tracks_to_msg(header: object, tracks: Tracks, vocab: ClassVocabulary) -> TrackArray:
    """Tracks (xyxy boxes) -> TrackArray on ``header`` (the detections' stamp and frame_id)."""
    out = TrackArray(header=header)
    b = tracks.boxes.astype(np.float64)
    cx, cy = ((b[:, 0] + b[:, 2]) / 2).tolist(), ((b[:, 1] + b[:, 3]) / 2).tolist()
    w, h = (b[:, 2] - b[:, 0]).tolist(), (b[:, 3] - b[:, 1]).tolist()
    vel = tracks.velocities.astype(np.float64)
    msgs = []
    for i, (tid, label, score, age, hits, state) in enumerate(zip(
            tracks.ids.tolist(), tracks.labels.tolist(), tracks.scores.tolist(), tracks.ages.tolist(),
            tracks.hits.tolist(), tracks.states.tolist(), strict=True)):
        t = Track(id=tid, class_id=vocab.name(label), score=float(score), velocity_x=float(vel[i, 0]),
                  velocity_y=float(vel[i, 1]), age=float(age), hits=hits, state=state)
        t.bbox.center.position.x, t.bbox.center.position.y = cx[i], cy[i]
        t.bbox.size_x, t.bbox.size_y = w[i], h[i]
        msgs.append(t)
    out.tracks = msgs
    return out


def tracks_to_detections(header: object, tracks: Tracks, vocab: ClassVocabulary) -> Detection2DArray:
    """Tracks -> Detection2DArray with ``id`` = track id (for consumers that only speak vision_msgs)."""
    names = [vocab.name(int(label)) for label in tracks.labels]
    return arrays_to_detections(header, tracks.boxes, tracks.scores, names, [str(i) for i in tracks.ids.tolist()])
