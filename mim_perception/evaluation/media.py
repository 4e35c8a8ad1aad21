"""Pictures of a run: annotated frames, the MP4, and an MCAP Foxglove overlays natively.

Foxglove draws ``foxglove_msgs/msg/ImageAnnotations`` over an image topic in its Image panel. The message
definitions (ROS 2 flavour, from foxglove/schemas) are registered in the rosbags typestore here, so writing
them needs no foxglove_msgs install; the MCAP carries the definitions and Foxglove reads them from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from rosbags.typesys import get_types_from_msg

from mim_perception.bags.io import BagWriter, header_stamp_ns, iter_messages, make_typestore, repo_msg_dirs
from mim_perception.core.labels import LabelSpace
from mim_perception.core.overlay import draw_overlay
from mim_perception.core.types import Detections
from mim_perception.evaluation.records import FrameLog, FrameOutput

FOXGLOVE_MSGS = {
    "foxglove_msgs/msg/Point2": "float64 x\nfloat64 y\n",
    "foxglove_msgs/msg/Color": "float64 r\nfloat64 g\nfloat64 b\nfloat64 a\n",
    "foxglove_msgs/msg/CircleAnnotation": "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\n"
                                          "float64 diameter\nfloat64 thickness\nfoxglove_msgs/Color fill_color\n"
                                          "foxglove_msgs/Color outline_color\n",
    "foxglove_msgs/msg/PointsAnnotation": "builtin_interfaces/Time timestamp\nuint8 UNKNOWN=0\nuint8 POINTS=1\n"
                                          "uint8 LINE_LOOP=2\nuint8 LINE_STRIP=3\nuint8 LINE_LIST=4\nuint8 type\n"
                                          "foxglove_msgs/Point2[] points\nfoxglove_msgs/Color outline_color\n"
                                          "foxglove_msgs/Color[] outline_colors\nfoxglove_msgs/Color fill_color\n"
                                          "float64 thickness\n",
    "foxglove_msgs/msg/TextAnnotation": "builtin_interfaces/Time timestamp\nfoxglove_msgs/Point2 position\nstring text\n"
                                        "float64 font_size\nfoxglove_msgs/Color text_color\n"
                                        "foxglove_msgs/Color background_color\n",
    "foxglove_msgs/msg/ImageAnnotations": "foxglove_msgs/CircleAnnotation[] circles\n"
                                          "foxglove_msgs/PointsAnnotation[] points\n"
                                          "foxglove_msgs/TextAnnotation[] labels\n",
}


def decode_image(data: bytes, msgtype: str, store: Any) -> np.ndarray:
    msg = store.deserialize_cdr(data, msgtype)
    if msgtype.endswith("CompressedImage"):
        img = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError("undecodable compressed image")
        return img
    arr = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    img = arr[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return img[..., ::-1].copy() if msg.encoding == "rgb8" else img.copy()


def annotate(image: np.ndarray, out: FrameOutput, labels: LabelSpace, caption: str = "") -> np.ndarray:
    """The node's overlay (core.overlay) of the recorded outputs, plus track ids and a caption line."""
    seg = out.seg if out.seg is not None else np.full(image.shape[:2], 255, np.uint8)
    tracks = None
    if len(out.track_ids):
        tracks = SimpleNamespace(confirmed=lambda: SimpleNamespace(boxes=out.track_boxes, ids=out.track_ids))
    dets = Detections.create(out.boxes.astype(np.float32), out.scores.astype(np.float32),
                             np.clip(out.labels, 0, None).astype(np.int64))
    img = draw_overlay(image, SimpleNamespace(seg=seg, detections=dets, tracks=tracks), labels.colors_bgr,
                       labels.detection)
    if caption:
        cv2.rectangle(img, (0, 0), (img.shape[1], 18), (0, 0, 0), -1)
        cv2.putText(img, caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def frames_of(outputs_bag: Path, log: FrameLog) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of the frames the driver published, read back from the outputs bag."""

    store = make_typestore(repo_msg_dirs())
    index = {s: i for i, s in enumerate(log.stamps_ns)}
    for m in iter_messages(outputs_bag, [log.image_topic]):
        i = index.get(header_stamp_ns(m.data))
        if i is not None:
            yield i, decode_image(m.data, m.msgtype, store)


def _caption(i: int, out: FrameOutput, log: FrameLog) -> str:
    a = log.answer_wall_ns[i]
    e2e = f"{(a - log.publish_wall_ns[i]) / 1e6:.0f} ms" if a is not None else "dropped"
    inf = f" inference {out.latency['inference_ms']:.0f} ms" if out.latency else ""
    return f"frame {i}  end-to-end {e2e}{inf}  objects {len(out.boxes)}  tracks {len(out.track_ids)}"


def write_video(path: Path, outputs_bag: Path, log: FrameLog, outs: Sequence[FrameOutput], labels: LabelSpace,
                fps: float) -> int:
    """Annotated MP4 (mp4v) of every published frame; a frame the graph dropped shows the raw image, marked."""
    writer = None
    n = 0
    try:
        for i, img in frames_of(outputs_bag, log):
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write {path} (no mp4v encoder in this build)")
            writer.write(annotate(img, outs[i], labels, _caption(i, outs[i], log)))
            n += 1
    finally:
        if writer is not None:
            writer.release()
    return n


def sample_strip(outputs_bag: Path, log: FrameLog, outs: Sequence[FrameOutput], labels: LabelSpace,
                 count: int = 4, width: int = 480) -> np.ndarray | None:
    """``count`` evenly spaced answered frames with overlays, side by side (2 per row)."""
    answered = [i for i, o in enumerate(outs) if o.has_detections]
    if not answered:
        return None
    pick = {answered[round(k)] for k in np.linspace(0, len(answered) - 1, min(count, len(answered)))}
    tiles = []
    for i, img in frames_of(outputs_bag, log):
        if i in pick:
            a = annotate(img, outs[i], labels, _caption(i, outs[i], log))
            tiles.append(cv2.resize(a, (width, round(a.shape[0] * width / a.shape[1]))))
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[k:k + 2]) for k in range(0, len(tiles), 2)]
    return np.vstack(rows)


def _color(t: Any, bgr: Sequence[int], a: float = 1.0) -> Any:
    return t["foxglove_msgs/msg/Color"](r=bgr[2] / 255, g=bgr[1] / 255, b=bgr[0] / 255, a=a)


def annotations_msg(t: Any, stamp_ns: int, out: FrameOutput, labels: LabelSpace) -> Any:
    time = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    p2 = t["foxglove_msgs/msg/Point2"]
    points, texts = [], []
    track_of = {}
    for tid, tb in zip(out.track_ids, out.track_boxes, strict=True):
        track_of[tuple(np.round(tb).astype(int))] = int(tid)
    for box, score, label in zip(out.boxes, out.scores, out.labels, strict=True):
        x0, y0, x1, y1 = (float(v) for v in box)
        colour = labels.colors_bgr[labels.det_to_seg[label]] if label >= 0 else (0, 255, 0)
        points.append(t["foxglove_msgs/msg/PointsAnnotation"](
            timestamp=time, type=2, points=[p2(x=x0, y=y0), p2(x=x1, y=y0), p2(x=x1, y=y1), p2(x=x0, y=y1)],
            outline_color=_color(t, colour), outline_colors=[], fill_color=_color(t, colour, 0.0), thickness=2.0))
        name = labels.detection[label] if label >= 0 else "?"
        texts.append(t["foxglove_msgs/msg/TextAnnotation"](
            timestamp=time, position=p2(x=x0, y=max(y0 - 2, 0.0)), text=f"{name} {score:.2f}", font_size=12.0,
            text_color=_color(t, (255, 255, 255)), background_color=_color(t, (0, 0, 0), 0.6)))
    for tid, tb in zip(out.track_ids, out.track_boxes, strict=True):
        texts.append(t["foxglove_msgs/msg/TextAnnotation"](
            timestamp=time, position=p2(x=float(tb[0]), y=float(tb[3])), text=f"#{int(tid)}", font_size=12.0,
            text_color=_color(t, (0, 255, 255)), background_color=_color(t, (0, 0, 0), 0.6)))
    return t["foxglove_msgs/msg/ImageAnnotations"](circles=[], points=points, labels=texts)


def write_foxglove(path: Path, outputs_bag: Path, log: FrameLog, outs: Sequence[FrameOutput], labels: LabelSpace,
                   camera: str) -> dict[str, int]:
    """MCAP bag: the input frames, ImageAnnotations (boxes, classes, scores, track ids) and a colourised
    segmentation image per answered frame, all on the frame's stamp. Open the .mcap in Foxglove, Image panel
    on the input topic, enable the annotations topic."""


    store = make_typestore(repo_msg_dirs())
    for name, text in FOXGLOVE_MSGS.items():
        store.register(get_types_from_msg(text, name))
    t = store.types
    index = {s: i for i, s in enumerate(log.stamps_ns)}
    ann_topic, seg_topic = f"/{camera}/perception/annotations", f"/{camera}/perception/segmentation_color"
    with BagWriter(path, "mcap", store) as w:
        for m in iter_messages(outputs_bag, [log.image_topic]):
            stamp = header_stamp_ns(m.data)
            i = index.get(stamp)
            w.write(log.image_topic, m.msgtype, stamp, m.data)
            if i is None or not outs[i].has_detections:
                continue
            w.write_msg(ann_topic, "foxglove_msgs/msg/ImageAnnotations", stamp, annotations_msg(t, stamp, outs[i], labels))
            seg = outs[i].seg
            if seg is not None:
                colour = np.ascontiguousarray(labels.colorize(seg)[..., ::-1])
                h, wd = colour.shape[:2]
                header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
                    sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), frame_id=f"camera_{camera}_optical")
                w.write_msg(seg_topic, "sensor_msgs/msg/Image", stamp, t["sensor_msgs/msg/Image"](
                    header=header, height=h, width=wd, encoding="rgb8", is_bigendian=0, step=wd * 3,
                    data=colour.reshape(-1)))
        return dict(w.counts)
