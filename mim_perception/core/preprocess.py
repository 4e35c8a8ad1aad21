"""Letterbox resize shared by training and the runtime: the model sees frames exactly as it was trained on.

uint8 in, uint8 out: normalisation lives inside the model (one cv2.resize + a border; no float work here).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114   # grey border of letterboxed/padded images (YOLO convention; the model sees it in training too)


@dataclass(frozen=True)
class Geometry:
    """Camera pixels -> model pixels: x_model = x_camera · (sx, sy) + (px, py) (letterbox: sx = sy; stretch: not)."""

    sx: float
    sy: float
    px: float
    py: float

    def to_camera(self, boxes: np.ndarray) -> np.ndarray:
        off = np.array([self.px, self.py, self.px, self.py], np.float32)
        return (np.asarray(boxes, np.float32).reshape(-1, 4) - off) / np.array([self.sx, self.sy, self.sx, self.sy],
                                                                                np.float32)


def letterbox_params(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[float, int, int]:
    """(scale, pad_x, pad_y) that fit an image of ``src_hw`` into ``dst_hw`` keeping aspect, centred."""
    (h, w), (dh, dw) = src_hw, dst_hw
    scale = min(dh / h, dw / w)
    nw, nh = round(w * scale), round(h * scale)
    return scale, (dw - nw) // 2, (dh - nh) // 2


def letterbox(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, float, int, int]:
    """Resize ``image`` (H×W[×C]) to fit ``size_hw`` keeping aspect, pad with grey -> (image, scale, pad_x, pad_y)."""
    h, w = image.shape[:2]
    dh, dw = size_hw
    scale, px, py = letterbox_params((h, w), size_hw)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if (nw, nh) != (dw, dh):
        image = cv2.copyMakeBorder(image, py, dh - nh - py, px, dw - nw - px, cv2.BORDER_CONSTANT,
                                   value=(PAD_VALUE,) * 3)
    return image, scale, px, py


def letterbox_boxes(boxes: np.ndarray, scale: float, pad: tuple[float, float]) -> np.ndarray:
    """Boxes (N×4 xyxy) in source pixels -> letterboxed pixels."""
    return (np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32(scale)
            + np.array([pad[0], pad[1], pad[0], pad[1]], np.float32))


def unletterbox_boxes(boxes: np.ndarray, scale: float, pad: tuple[float, float]) -> np.ndarray:
    """Boxes (N×4 xyxy) in letterboxed pixels -> source image pixels (inverse of :func:`letterbox_boxes`)."""
    return ((np.asarray(boxes, np.float32).reshape(-1, 4) - np.array([pad[0], pad[1], pad[0], pad[1]], np.float32))
            / np.float32(scale))


def to_chw(image: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 -> 1×3×H×W uint8 (contiguous: the copy the backend needs anyway)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))[None]
