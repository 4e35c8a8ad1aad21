"""The two COCO teachers imported with `import-model` give, through the perception pipeline, the boxes of an
independent reference decode written from their published conventions (YOLOX demo post-processing; NanoDet's GFL
distance decode), and the same KITTI car AP50. Needs the real data (skips elsewhere)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mim_perception.core.config import config_dir, load_config
from mim_perception.core.labels import LabelSpace
from mim_perception.core.pipeline import Perceiver, PerceptionConfig
from mim_perception.core.types import Detections
from mim_perception.evaluation.real_frames import score_kitti
from mim_perception.inference.backends import BackendConfig, load_backend
from mim_perception.inference.external import import_model
from mim_perception.inference.ort_backend import cpu_session
from mim_perception.training.real_sources import KittiSource

L = LabelSpace.load()
COCO_TO_STACK = {2: "car", 7: "truck", 5: "bus"}          # person/bicycle fusion is not part of the reference
THR, NMS = 0.3, 0.6


def _reference(path: Path, kind: str, image: np.ndarray, thr: float = THR) -> Detections:
    """Written from the teachers' documented pre/post-processing only (no project code but OpenCV's NMS)."""
    h, w = image.shape[:2]
    r = min(416 / h, 416 / w)
    small = cv2.resize(image, (int(w * r), int(h * r)), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    canvas = np.full((416, 416, 3), 114.0 if kind == "yolox" else 0.0, np.float32)
    ox, oy = (0, 0) if kind == "yolox" else ((416 - small.shape[1]) // 2, (416 - small.shape[0]) // 2)
    canvas[oy:oy + small.shape[0], ox:ox + small.shape[1]] = small
    sess = cpu_session(path, 2)
    boxes, scores = [], []
    if kind == "yolox":
        out = sess.run(None, {"images": canvas.transpose(2, 0, 1)[None]})[0][0]
        for s, n0 in ((8, 0), (16, 52 * 52), (32, 52 * 52 + 26 * 26)):
            g = 416 // s
            o = out[n0:n0 + g * g]
            ys, xs = np.divmod(np.arange(g * g), g)
            cx, cy = (o[:, 0] + xs) * s, (o[:, 1] + ys) * s
            bw, bh = np.exp(o[:, 2]) * s, np.exp(o[:, 3]) * s
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
            scores.append(o[:, 4:5] * o[:, 5:])
    else:
        x = (canvas - [103.53, 116.28, 123.675]) / [57.375, 57.12, 58.395]
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(None, {"input.1": x.astype(np.float32).transpose(2, 0, 1)[None]}), strict=True))
        for s in (8, 16, 32):
            g = 416 // s
            ys, xs = np.divmod(np.arange(g * g), g)
            px, py = xs * s + (s - 1) / 2, ys * s + (s - 1) / 2
            d = res[f"dis_pred_stride_{s}"][0].reshape(-1, 4, 8)
            p = np.exp(d - d.max(-1, keepdims=True))
            dist = (p / p.sum(-1, keepdims=True) * np.arange(8)).sum(-1) * s
            boxes.append(np.stack([px - dist[:, 0], py - dist[:, 1], px + dist[:, 2], py + dist[:, 3]], 1))
            scores.append(res[f"cls_pred_stride_{s}"][0])
    b, sc = np.concatenate(boxes), np.concatenate(scores)
    cls = sc.argmax(1)
    best = sc[np.arange(len(cls)), cls]
    keep = np.isin(cls, list(COCO_TO_STACK)) & (best >= thr)
    b, best, cls = b[keep], best[keep], cls[keep]
    idx = np.asarray(cv2.dnn.NMSBoxesBatched([[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in b.tolist()],
                                             best.tolist(), cls.tolist(), 0.0, NMS), int).reshape(-1)
    b = (b[idx] - [ox, oy, ox, oy]) / r
    b[:, 0::2] = b[:, 0::2].clip(0, w)
    b[:, 1::2] = b[:, 1::2].clip(0, h)
    return Detections.create(b, best[idx], [L.det_index(COCO_TO_STACK[int(c)]) for c in cls[idx]])


@pytest.mark.parametrize("kind,file", [("yolox", "yolox_nano_coco.onnx"), ("nanodet", "nanodet_m_416_coco.onnx")])
def test_teacher_in_the_pipeline_matches_the_reference(realdata: Path, tmp_path: Path, kind: str, file: str) -> None:
    import_model(realdata / "teachers" / file, tmp_path / kind, kind, classes="coco",
                 class_map=config_dir() / "class_maps" / "coco_to_driving.yaml")
    cfg = load_config(BackendConfig, None, {"backend.model": str(tmp_path / kind), "backend.kind": "onnxruntime"},
                      prefix="backend.")
    backend, _, _ = load_backend(cfg)
    perceiver = Perceiver(backend, load_config(PerceptionConfig, None, {"perception.score_threshold": THR,
                                                                        "perception.nms_iou": NMS}, prefix="perception."))
    vehicles = [L.det_index(c) for c in ("car", "truck", "bus")]
    src = KittiSource(realdata / "kitti", (60, 74))
    for i in range(0, len(src), 3):
        image = src[i].image
        ours = perceiver.process(image, 0.0).detections
        ours = ours.select(np.isin(ours.labels, vehicles))
        ref = _reference(realdata / "teachers" / file, kind, image)
        assert len(ours) == len(ref), (i, ours, ref)
        if not len(ref):
            continue
        o, q = np.lexsort(ours.boxes.T[::-1]), np.lexsort(ref.boxes.T[::-1])
        assert np.abs(ours.boxes[o] - ref.boxes[q]).max() <= 1.0 and (ours.labels[o] == ref.labels[q]).all()

    def ours_low(im: np.ndarray) -> Detections:
        return Perceiver(backend, load_config(PerceptionConfig, None, {"perception.score_threshold": 0.01},
                                              prefix="perception.")).process(im, 0.0).detections

    def ref_low(im: np.ndarray) -> Detections:
        return _reference(realdata / "teachers" / file, kind, im, 0.01)

    ap_ours, ap_ref = score_kitti(ours_low, src, L)["AP50"]["car"], score_kitti(ref_low, src, L)["AP50"]["car"]
    assert abs(ap_ours - ap_ref) <= 0.01, (ap_ours, ap_ref)
