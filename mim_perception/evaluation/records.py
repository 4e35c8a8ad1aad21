"""Per-frame ground truth and recorded graph outputs, read from bags without ROS (rosbags typestore).

The evaluation driver replays frame ``i`` of the input bag with header stamp ``stamps[i]`` (its own,
recorded in ``frames.json``) and records every output topic of the perception node into an MCAP bag.
Everything here joins outputs to frames by that header stamp, so a frame the graph never answered shows
up as missing (counted), never as a silently shifted neighbour.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mim_perception.bags.io import bag_summary, header_stamp_ns, iter_messages, make_typestore, repo_msg_dirs
from mim_perception.core.errors import BagError, ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.evaluation.mot import read_mot
from mim_perception.ros.detection_msgs import detections_to_arrays

OUTPUTS = ("detections", "segmentation", "tracks", "latency", "drift")
STAGES = ("decode_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "tracking_ms", "publish_ms", "pipeline_ms")


@dataclass
class GroundTruth:
    boxes: np.ndarray                 # N×4 xyxy camera pixels
    labels: np.ndarray                # N int64, index into LabelSpace.detection
    ids: np.ndarray                   # N int64 track ids (-1 unknown)
    seg: np.ndarray | None = None     # H×W uint8 label mask (255 ignore) or None


@dataclass
class FrameOutput:
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    seg: np.ndarray | None = None
    track_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    track_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    track_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    latency: dict[str, float] | None = None
    drops: tuple[int, int, int] | None = None      # cumulative superseded, busy, malformed
    has_detections: bool = False


@dataclass
class DriftPoint:
    frame: int
    p_value: float
    score: float
    level: int


@dataclass
class FrameLog:
    """What the driver did: per frame the original and published stamps and the wall clock of publish/answer."""

    image_topic: str
    orig_stamps_ns: list[int]
    stamps_ns: list[int]
    publish_wall_ns: list[int]
    answer_wall_ns: list[int | None]
    mode: str
    rate: float

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))

    @classmethod
    def load(cls, path: Path) -> FrameLog:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a frame log written by mim-perception evaluate ({e})") from e


def output_prefix(camera: str) -> str:
    return f"/{camera}/perception/out"


def gt_topics(image_topic: str) -> tuple[str, str]:
    """``/camera/front/image_raw[/compressed]`` -> (``/camera/front/ground_truth/detections``, ``.../segmentation``)."""
    base = image_topic.removesuffix("/compressed").rsplit("/", 1)[0]
    return f"{base}/ground_truth/detections", f"{base}/ground_truth/segmentation"


def image_topic_of(topics: Iterable[str]) -> str:
    topics = list(topics)
    found = next((t for t in topics if t.endswith("/image_raw/compressed")), None) or next(
        (t for t in topics if t.endswith("/image_raw")), None)
    if found is None:
        raise BagError(f"bag has no .../image_raw or .../image_raw/compressed topic; topics: {topics}")
    return found


def _class_index(labels: LabelSpace, name: str) -> int:
    try:
        return labels.detection.index(name)
    except ValueError:
        return -1


def detections_from(msg: Any, labels: LabelSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """vision_msgs/Detection2DArray (rosbags object) -> boxes xyxy, scores, label indices (-1: unknown class or no
    hypothesis), ids (-1 if not an integer); float64, as recorded."""
    boxes, scores, names, ids = detections_to_arrays(msg, np.float64)
    lab = np.array([_class_index(labels, n) for n in names], np.int64)
    return boxes, scores, lab, np.array([int(i) if i.lstrip("-").isdigit() else -1 for i in ids], np.int64)


def mono8(msg: Any) -> np.ndarray:
    if msg.encoding not in ("mono8", "8UC1"):
        raise BagError(f"label image must be mono8, got {msg.encoding!r}")
    data = np.asarray(msg.data, np.uint8)
    return data.reshape(msg.height, msg.step)[:, : msg.width].copy()


def read_frames(bag: Path, image_topic: str) -> list[tuple[int, bytes, str]]:
    """(header stamp ns, raw CDR, msgtype) of every image message, in bag order."""
    return [(header_stamp_ns(m.data), m.data, m.msgtype) for m in iter_messages(bag, [image_topic])]


def gt_from_bag(bag: Path, stamps_ns: Sequence[int], det_topic: str, seg_topic: str | None,
                labels: LabelSpace) -> list[GroundTruth] | None:
    """Ground truth per frame (joined by header stamp); None when the bag has no detection ground truth."""

    available = bag_summary(bag).topics
    if det_topic not in available:
        return None
    store = make_typestore(repo_msg_dirs())
    index = {s: i for i, s in enumerate(stamps_ns)}
    out = [GroundTruth(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.int64)) for _ in stamps_ns]
    topics = [det_topic] + ([seg_topic] if seg_topic and seg_topic in available else [])
    for m in iter_messages(bag, topics):
        i = index.get(header_stamp_ns(m.data))
        if i is None:
            continue
        msg = store.deserialize_cdr(m.data, m.msgtype)
        if m.topic == det_topic:
            boxes, _, lab, ids = detections_from(msg, labels)
            keep = lab >= 0
            out[i].boxes, out[i].labels, out[i].ids = boxes[keep], lab[keep], ids[keep]
        else:
            out[i].seg = mono8(msg)
    return out


def gt_from_dir(directory: Path, n_frames: int, labels: LabelSpace) -> list[GroundTruth]:
    """MOTChallenge layout (``gt/gt.txt`` with 1-based class = detection index + 1, optional ``seg/NNNNNN.png``):
    frame k of the directory is the k-th image of the bag."""

    mot = read_mot(directory / "gt" / "gt.txt", "ground truth")
    out = []
    for f in range(1, n_frames + 1):
        rows = mot.select((mot.frames == f) & (mot.conf != 0))
        lab = rows.classes - 1
        keep = (lab >= 0) & (lab < len(labels.detection))
        png = directory / "seg" / f"{f:06d}.png"
        seg = cv2.imread(str(png), cv2.IMREAD_UNCHANGED) if png.is_file() else None
        out.append(GroundTruth(rows.xyxy()[keep], lab[keep], rows.ids[keep], seg))
    return out


def outputs_from_bag(outputs: Path, prefix: str, stamps_ns: Sequence[int], labels: LabelSpace
                     ) -> tuple[list[FrameOutput], list[DriftPoint]]:
    """Recorded ``{prefix}/{detections,segmentation,tracks,latency,drift}`` joined to frames by header stamp."""
    store = make_typestore(repo_msg_dirs())
    index = {s: i for i, s in enumerate(stamps_ns)}
    frames = [FrameOutput() for _ in stamps_ns]
    drift: list[DriftPoint] = []

    present = [f"{prefix}/{o}" for o in OUTPUTS if f"{prefix}/{o}" in bag_summary(outputs).topics]
    for m in iter_messages(outputs, present):
        i = index.get(header_stamp_ns(m.data))
        if i is None:
            continue
        msg: Any = store.deserialize_cdr(m.data, m.msgtype)
        kind = m.topic.rsplit("/", 1)[1]
        fo = frames[i]
        if kind == "detections":
            fo.boxes, fo.scores, fo.labels, _ = detections_from(msg, labels)
            fo.has_detections = True
        elif kind == "segmentation":
            fo.seg = mono8(msg)
        elif kind == "tracks":
            conf = [t for t in msg.tracks if t.state == 1]
            fo.track_ids = np.array([t.id for t in conf], np.int64)
            fo.track_labels = np.array([_class_index(labels, t.class_id) for t in conf], np.int64)
            fo.track_boxes = np.array([(t.bbox.center.position.x - t.bbox.size_x / 2,
                                        t.bbox.center.position.y - t.bbox.size_y / 2,
                                        t.bbox.center.position.x + t.bbox.size_x / 2,
                                        t.bbox.center.position.y + t.bbox.size_y / 2) for t in conf]).reshape(-1, 4)
        elif kind == "latency":
            fo.latency = {s: float(getattr(msg, s)) for s in STAGES}
            fo.drops = (int(msg.dropped_superseded), int(msg.dropped_busy), int(msg.dropped_malformed))
        elif kind == "drift":
            drift.append(DriftPoint(i, float(msg.drift_p_value), float(msg.drift_score), int(msg.level)))
    return frames, drift


Run = tuple[FrameLog, list[GroundTruth] | None, list[FrameOutput], list[DriftPoint]]


def load_run(bag: Path, out: Path, log: FrameLog, camera: str, labels: LabelSpace, *, gt_dir: Path | None = None,
             gt_topic: str | None = None) -> Run:
    """One evaluated run read back: (log, ground truth per frame or None, outputs per frame, drift points)."""
    det_topic, seg_topic = gt_topics(log.image_topic)
    gts = gt_from_dir(gt_dir, len(log.stamps_ns), labels) if gt_dir is not None else \
        gt_from_bag(bag, log.orig_stamps_ns, gt_topic or det_topic, seg_topic, labels)
    outs, drift = outputs_from_bag(out / "outputs", output_prefix(camera), log.stamps_ns, labels)
    return log, gts, outs, drift
