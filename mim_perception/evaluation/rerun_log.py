"""Optional rerun.io recording of an evaluated run: frames, boxes (class, score, track id), segmentation,
latency and drift over time, on a ``frame`` timeline. Needs ``pip install rerun-sdk`` (a large wheel, so an
extra: requirements/viz.txt); open the result with ``rerun OUT/run.rrd``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.evaluation.media import frames_of
from mim_perception.evaluation.records import DriftPoint, FrameLog, FrameOutput


def write_rerun(path: Path, outputs_bag: Path, log: FrameLog, outs: Sequence[FrameOutput], drift: Sequence[DriftPoint],
                labels: LabelSpace, camera: str) -> int:
    """Writes ``path`` (.rrd); returns the number of frames logged."""
    try:
        import rerun as rr  # noqa: PLC0415 -- rerun-sdk is optional (viz extra)
    except ImportError as e:
        raise ConfigError("--rerun needs rerun-sdk: pip install -r requirements/viz.txt") from e
    rec = rr.RecordingStream("mim_perception_evaluate")
    rec.save(str(path))
    # class ids -> names and colours in the viewer (segmentation classes, then detection classes after them)
    seg_n = len(labels.segmentation)
    infos = [rr.AnnotationInfo(id=i, label=n, color=tuple(int(c) for c in labels.colors_bgr[i][::-1]))
             for i, n in enumerate(labels.segmentation)]
    infos += [rr.AnnotationInfo(id=seg_n + i, label=n) for i, n in enumerate(labels.detection)]
    rec.log(camera, rr.AnnotationContext(infos), static=True)
    drift_at = {p.frame: p for p in drift}
    n = 0
    for i, img in frames_of(outputs_bag, log):
        rec.set_time("frame", sequence=i)
        ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])   # ~20× smaller than raw pixels
        rec.log(f"{camera}/image", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg") if ok
                else rr.Image(img[..., ::-1]))
        o = outs[i]
        if o.seg is not None:
            rec.log(f"{camera}/image/segmentation", rr.SegmentationImage(_upscale(o.seg, img.shape[:2])))
        if len(o.boxes):
            rec.log(f"{camera}/image/detections", rr.Boxes2D(
                array=o.boxes, array_format=rr.Box2DFormat.XYXY, class_ids=seg_n + np.clip(o.labels, 0, None),
                labels=[f"{labels.detection[c] if c >= 0 else '?'} {s:.2f}" for c, s in zip(o.labels, o.scores, strict=True)]))
        if len(o.track_ids):
            rec.log(f"{camera}/image/tracks", rr.Boxes2D(array=o.track_boxes, array_format=rr.Box2DFormat.XYXY,
                                                         labels=[f"#{t}" for t in o.track_ids]))
        a = log.answer_wall_ns[i]
        if a is not None:
            rec.log("latency/end_to_end_ms", rr.Scalars((a - log.publish_wall_ns[i]) / 1e6))
        if o.latency:
            rec.log("latency/inference_ms", rr.Scalars(o.latency["inference_ms"]))
        if i in drift_at:
            rec.log("drift/p_value", rr.Scalars(drift_at[i].p_value))
        n += 1
    rec.flush()
    return n


def _upscale(seg: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return seg if seg.shape == hw else cv2.resize(seg, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
