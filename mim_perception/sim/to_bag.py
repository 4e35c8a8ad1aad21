"""Write simulated frames (synthetic or simulator) to a rosbag2 with camera and ground-truth topics.

Topics for camera ``NAME`` (the stack's inputs plus what evaluation reads):
  /camera/NAME/image_raw/compressed      sensor_msgs/CompressedImage (jpeg)   or  /camera/NAME/image_raw (bgr8)
  /camera/NAME/camera_info               sensor_msgs/CameraInfo (plumb_bob, zero distortion)
  /camera/NAME/ground_truth/detections   vision_msgs/Detection2DArray, Detection2D.id = persistent object id
  /camera/NAME/ground_truth/segmentation sensor_msgs/Image mono8 in the stack's label space (255 = ignore)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from mim_perception.bags.io import BagWriter, repo_msg_dirs
from mim_perception.core.errors import BadImageError


class SimFrame(Protocol):
    image: np.ndarray          # H×W×3 uint8 BGR
    seg: np.ndarray            # H×W uint8 label ids
    boxes: np.ndarray          # N×4 float32 xyxy
    labels: np.ndarray         # N int32 detection class index
    track_ids: np.ndarray      # N int32
    stamp: float               # s
    camera: Any                # fx, fy, cx, cy, width, height


@dataclass(frozen=True)
class CameraTopics:
    name: str

    @property
    def image(self) -> str:
        return f"/camera/{self.name}/image_raw"

    @property
    def compressed(self) -> str:
        return self.image + "/compressed"

    @property
    def info(self) -> str:
        return f"/camera/{self.name}/camera_info"

    @property
    def gt_detections(self) -> str:
        return f"/camera/{self.name}/ground_truth/detections"

    @property
    def gt_segmentation(self) -> str:
        return f"/camera/{self.name}/ground_truth/segmentation"


def _cam_value(camera: Any, key: str) -> float:
    return float(camera[key] if isinstance(camera, dict) else getattr(camera, key))


class _Builder:
    """Typestore message construction (rosbags), so writing a bag needs no rclpy."""

    def __init__(self, writer: BagWriter, frame_id: str) -> None:
        self.t = writer.typestore.types
        self.frame_id = frame_id

    def header(self, stamp_ns: int) -> Any:
        time = self.t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return self.t["std_msgs/msg/Header"](stamp=time, frame_id=self.frame_id)

    def compressed(self, h: Any, bgr: np.ndarray, quality: int) -> Any:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise BadImageError("JPEG encoding failed")
        return self.t["sensor_msgs/msg/CompressedImage"](header=h, format="bgr8; jpeg compressed bgr8",
                                                         data=np.frombuffer(buf.tobytes(), np.uint8))

    def image(self, h: Any, arr: np.ndarray, encoding: str) -> Any:
        arr = np.ascontiguousarray(arr)
        channels = 1 if arr.ndim == 2 else arr.shape[2]
        return self.t["sensor_msgs/msg/Image"](
            header=h, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
            step=arr.shape[1] * channels * arr.itemsize, data=arr.reshape(-1).view(np.uint8))

    def camera_info(self, h: Any, camera: Any) -> Any:
        fx, fy, cx, cy = (_cam_value(camera, k) for k in ("fx", "fy", "cx", "cy"))
        w, hh = int(_cam_value(camera, "width")), int(_cam_value(camera, "height"))
        k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
        p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
        roi = self.t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        return self.t["sensor_msgs/msg/CameraInfo"](
            header=h, height=hh, width=w, distortion_model="plumb_bob", d=np.zeros(5), k=k,
            r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)

    def detections(self, h: Any, boxes: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                   class_names: Sequence[str]) -> Any:
        t = self.t
        dets = []
        for box, label, oid in zip(np.asarray(boxes, np.float64), labels, ids, strict=True):
            x0, y0, x1, y1 = box
            center = t["vision_msgs/msg/Pose2D"](position=t["vision_msgs/msg/Point2D"](x=(x0 + x1) / 2, y=(y0 + y1) / 2),
                                                 theta=0.0)
            bbox = t["vision_msgs/msg/BoundingBox2D"](center=center, size_x=x1 - x0, size_y=y1 - y0)
            pose = t["geometry_msgs/msg/PoseWithCovariance"](
                pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
                                                 orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36))
            hyp = t["vision_msgs/msg/ObjectHypothesisWithPose"](
                hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=class_names[int(label)], score=1.0), pose=pose)
            dets.append(t["vision_msgs/msg/Detection2D"](header=h, results=[hyp], bbox=bbox, id=str(int(oid))))
        return t["vision_msgs/msg/Detection2DArray"](header=h, detections=dets)


def frames_to_bag(frames: Iterable[SimFrame], out: Path | str, class_names: Sequence[str], *, camera: str = "front",
                  compressed: bool = True, jpeg_quality: int = 90, storage: str = "mcap",
                  gt_detections: bool = True, gt_segmentation: bool = True) -> dict[str, int]:
    """Write ``frames`` to a new bag at ``out``; returns message counts per topic."""
    topics = CameraTopics(camera)
    frame_id = f"camera_{camera}_optical"
    with BagWriter(out, storage=storage, msg_dirs=repo_msg_dirs()) as writer:
        b = _Builder(writer, frame_id)
        for f in frames:
            ns = round(f.stamp * 1e9)
            h = b.header(ns)
            if compressed:
                writer.write_msg(topics.compressed, "sensor_msgs/msg/CompressedImage", ns, b.compressed(h, f.image, jpeg_quality))
            else:
                writer.write_msg(topics.image, "sensor_msgs/msg/Image", ns, b.image(h, f.image, "bgr8"))
            writer.write_msg(topics.info, "sensor_msgs/msg/CameraInfo", ns, b.camera_info(h, f.camera))
            if gt_detections:
                writer.write_msg(topics.gt_detections, "vision_msgs/msg/Detection2DArray", ns,
                                 b.detections(h, f.boxes, f.labels, f.track_ids, class_names))
            if gt_segmentation:   # raw mono8: large (W×H bytes per frame)
                writer.write_msg(topics.gt_segmentation, "sensor_msgs/msg/Image", ns, b.image(h, f.seg, "mono8"))
        return dict(writer.counts)
