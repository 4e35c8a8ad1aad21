"""Model outputs -> detections in camera pixels and a label mask; numpy + OpenCV only (runs beside any backend)."""

from __future__ import annotations

import cv2
import numpy as np

from mim_perception.core.preprocess import Geometry
from mim_perception.core.types import Detections


def select_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, score_threshold: float,
                      nms_iou: float, max_detections: int) -> Detections:
    """Threshold, class-aware NMS and cap of one image's fixed top-k candidates (K×4 xyxy, K, K).

    Non-finite candidates are removed before NMS (OpenCV would otherwise keep or crash on them)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    c = np.asarray(classes).reshape(-1).astype(np.int32)
    keep = np.isfinite(b).all(1) & np.isfinite(s) & (s >= score_threshold) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b, s, c = b[keep], s[keep], c[keep]
    if len(b) == 0:
        return Detections.empty()
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)
    # OpenCV 5 requires score_threshold >= 0; candidates are already thresholded above.
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), s.tolist(), c.tolist(), 0.0, float(nms_iou)), np.int64).reshape(-1)
    idx = idx[np.argsort(-s[idx], kind="stable")][:max_detections]
    return Detections(b[idx], s[idx], c[idx])


def to_camera(dets: Detections, geom: Geometry, camera_hw: tuple[int, int]) -> Detections:
    """Model pixels -> camera pixels, clipped to the image."""
    if len(dets) == 0:
        return dets
    b = geom.to_camera(dets.boxes)
    h, w = camera_hw
    np.clip(b[:, 0::2], 0, w, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, h, out=b[:, 1::2])
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])   # a box entirely in the letterbox border vanishes
    return Detections(b[ok], dets.scores[ok], dets.labels[ok])


def seg_to_camera(seg: np.ndarray, stride: int, scale: float, pad_x: float, pad_y: float, camera_hw: tuple[int, int],
                  full_resolution: bool) -> np.ndarray:
    """Label map at model resolution / ``stride`` -> the camera's field of view (letterbox border cropped),
    at camera resolution (nearest) or at the model's own scale (cheaper to publish)."""
    h, w = camera_hw
    def half_up(v: float) -> int:   # same rounding at both ends keeps the crop's size = view size / stride
        return int(np.floor(v + 0.5))

    x0, y0 = half_up(pad_x / stride), half_up(pad_y / stride)
    x1 = max(half_up((pad_x + w * scale) / stride), x0 + 1)   # at least one label column/row, even for a 1×1 frame
    y1 = max(half_up((pad_y + h * scale) / stride), y0 + 1)
    crop = seg[y0:y1, x0:x1]
    crop = np.ascontiguousarray(crop.astype(np.uint8, copy=False))
    if not full_resolution:
        return crop
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)
