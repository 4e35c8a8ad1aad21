"""Perceiver with a fake backend: geometry back to camera pixels, NMS, bad outputs, seg crop, batching."""

from __future__ import annotations

import numpy as np
import pytest

from mim_perception.core.config import load_config
from mim_perception.core.errors import BadImageError
from mim_perception.core.pipeline import ModelOutputs, Perceiver, PerceptionConfig
from mim_perception.core.postprocess import seg_to_camera, select_detections
from mim_perception.core.preprocess import letterbox, letterbox_boxes


class FakeBackend:
    """Returns, per image, given candidate boxes in *camera* pixels mapped into the letterboxed input."""

    name = "fake"
    input_hw = (192, 320)
    seg_stride = 4

    def __init__(self, cam_boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, cam_hw: tuple[int, int]) -> None:
        _, self.scale, px, py = letterbox(np.zeros((*cam_hw, 3), np.uint8), self.input_hw)
        self.pad = (px, py)
        self.boxes = letterbox_boxes(cam_boxes, self.scale, self.pad)
        self.scores, self.classes = scores.astype(np.float32), classes
        self.calls: list[tuple[int, ...]] = []

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        self.calls.append(batch.shape)
        b = batch.shape[0]
        h, w = self.input_hw[0] // 4, self.input_hw[1] // 4
        seg = np.zeros((b, h, w), np.uint8)
        seg[:, : self.pad[1] // 4] = 9   # letterbox border: must be cropped away
        return ModelOutputs(np.repeat(self.boxes[None], b, 0), np.repeat(self.scores[None], b, 0),
                            np.repeat(self.classes[None], b, 0), seg, np.ones((b, 8), np.float32))


CFG = load_config(PerceptionConfig, None, prefix="perception.")
CAM = (720, 1280)


def test_boxes_come_back_in_camera_pixels_after_nms() -> None:
    cam_boxes = np.array([[100, 200, 300, 400], [104, 202, 302, 398], [600, 300, 700, 500], [10, 10, 20, 20]], np.float32)
    fb = FakeBackend(cam_boxes, np.array([0.9, 0.8, 0.7, 0.1]), np.array([0, 0, 3, 0]), CAM)
    r = Perceiver(fb, CFG).process(np.zeros((*CAM, 3), np.uint8), 1.0)
    assert fb.calls == [(1, 3, 192, 320)]
    # duplicate suppressed, low score removed, survivors back in camera pixels (to within resize rounding)
    assert r.detections.labels.tolist() == [0, 3]
    np.testing.assert_allclose(r.detections.boxes, cam_boxes[[0, 2]], atol=2.5)
    assert r.seg.shape == (45, 80) and 9 not in r.seg   # 720×1280 -> 180×320 in the 192×320 input, / 4
    assert set(r.timings_ms) == {"preprocess", "inference", "postprocess", "tracking", "monitoring"}


def test_non_finite_outputs_are_dropped_and_counted() -> None:
    cam_boxes = np.array([[100, 200, 300, 400], [np.nan, 0, 5, 5], [0, 0, np.inf, 9]], np.float32)
    fb = FakeBackend(cam_boxes, np.array([0.9, 0.9, 0.9]), np.array([0, 1, 2]), CAM)
    r = Perceiver(fb, CFG).process(np.zeros((*CAM, 3), np.uint8), 1.0)
    assert len(r.detections) == 1 and r.invalid_outputs == 2


def test_one_backend_call_per_frame() -> None:
    fb = FakeBackend(np.array([[10, 10, 50, 50]], np.float32), np.array([0.9]), np.array([1]), CAM)
    p = Perceiver(fb, CFG)
    rs = [p.process(np.zeros((*CAM, 3), np.uint8), float(t)) for t in range(3)]
    assert len(fb.calls) == 3 and all(c[0] == 1 for c in fb.calls) and all(len(r.detections) == 1 for r in rs)


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 10), (10, 10, 4)])
def test_bad_frames_raise(shape: tuple[int, ...]) -> None:
    fb = FakeBackend(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int32), CAM)
    with pytest.raises(BadImageError):
        Perceiver(fb, CFG).process(np.zeros(shape, np.uint8), 0.0)


def test_odd_and_tiny_frames_work() -> None:
    for hw in [(1, 1), (37, 1001), (4320, 7680)]:
        fb = FakeBackend(np.array([[0, 0, 1, 1]], np.float32), np.array([0.9]), np.array([0]), hw)
        r = Perceiver(fb, CFG).process(np.zeros((*hw, 3), np.uint8), 0.0)
        assert r.seg.ndim == 2 and (r.detections.boxes[:, 2:] <= np.array(hw[::-1])).all()


def test_select_and_seg_helpers() -> None:
    d = select_detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), score_threshold=0.1, nms_iou=0.5, max_detections=5)
    assert len(d) == 0
    seg = np.arange(48 * 80, dtype=np.int64).reshape(48, 80) % 10
    full = seg_to_camera(seg, 4, 0.25, 0, 6, (720, 1280), True)
    assert full.shape == (720, 1280) and full.dtype == np.uint8
