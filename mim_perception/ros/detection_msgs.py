"""vision_msgs/Detection2DArray <-> numpy detections (boxes xyxy in camera pixels, scores, class names).

Reading only touches message attributes, so it also reads the rosbags objects of recorded bags (evaluation,
no rclpy); vision_msgs is imported where messages are built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vision_msgs.msg import Detection2DArray


def detections_to_arrays(msg: Any, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """-> (boxes N×4 xyxy, scores N, class names, ids) in ``dtype``. Best hypothesis per detection."""
    n = len(msg.detections)
    boxes = np.empty((n, 4), dtype)
    scores = np.empty(n, dtype)
    names: list[str] = []
    ids: list[str] = []
    for i, d in enumerate(msg.detections):
        c, b = d.bbox.center.position, d.bbox
        boxes[i] = (c.x - b.size_x / 2, c.y - b.size_y / 2, c.x + b.size_x / 2, c.y + b.size_y / 2)
        if d.results:
            best = max(d.results, key=lambda r: r.hypothesis.score)
            scores[i] = best.hypothesis.score
            names.append(best.hypothesis.class_id)
        else:
            scores[i] = np.nan  # no hypothesis: invalid, the consumer drops and counts it
            names.append("")
        ids.append(d.id)
    return boxes, scores, names, ids


def arrays_to_detections(header: object, boxes: np.ndarray, scores: np.ndarray, names: Sequence[str],
                         ids: Sequence[str] | None = None) -> Detection2DArray:
    """Boxes N×4 xyxy -> Detection2DArray on ``header`` (the camera image's stamp and frame_id)."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose  # noqa: PLC0415 -- the numpy side of this module runs without ROS (bag evaluation)

    out = Detection2DArray(header=header)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dets = []
    for i in range(len(b)):
        d = Detection2D(header=header)
        d.bbox.center.position.x, d.bbox.center.position.y = float(cx[i]), float(cy[i])
        d.bbox.size_x, d.bbox.size_y = float(w[i]), float(h[i])
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = names[i]
        hyp.hypothesis.score = float(scores[i])
        d.results.append(hyp)
        if ids is not None:
            d.id = ids[i]
        dets.append(d)
    out.detections = dets
    return out
