"""Debug overlay: segmentation blended over the frame, boxes with class, score and track id (OpenCV only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from mim_perception.core.labels import IGNORE


def draw_overlay(image: np.ndarray, result: Any, palette_bgr: np.ndarray, class_names: Sequence[str],
                 alpha: float = 0.4) -> np.ndarray:
    """``result``: a PerceptionResult (detections in camera pixels, seg at camera or model scale, optional tracks)."""
    out = image.copy()
    h, w = image.shape[:2]
    if result.seg is not None:   # detectors without a segmentation output draw boxes only
        seg = result.seg if result.seg.shape == (h, w) else cv2.resize(result.seg, (w, h), interpolation=cv2.INTER_NEAREST)
        lut = np.zeros((256, 3), np.uint8)
        lut[: len(palette_bgr)] = np.asarray(palette_bgr, np.uint8).reshape(-1, 3)
        colour = lut[seg]
        labelled = seg != IGNORE
        out[labelled] = cv2.addWeighted(out, 1 - alpha, colour, alpha, 0)[labelled]
    for (x0, y0, x1, y1), score, label in zip(result.detections.boxes, result.detections.scores,
                                              result.detections.labels, strict=True):
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), (0, 255, 0), 2)
        cv2.putText(out, f"{class_names[int(label)]} {score:.2f}", (int(x0), max(int(y0) - 4, 10)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
    tracks = result.tracks
    if tracks is not None:
        for (x0, _, _, y1), tid in zip(tracks.confirmed().boxes, tracks.confirmed().ids, strict=True):
            cv2.putText(out, f"#{int(tid)}", (int(x0) + 2, int(y1) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1,
                        cv2.LINE_AA)
    return out
