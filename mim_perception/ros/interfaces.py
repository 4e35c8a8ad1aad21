"""What each graph node subscribes to and publishes: the table the README is generated from.

ROS-free data. A graph test starts the nodes and checks that their real publishers and subscriptions
are exactly these (names, types), so the documentation cannot drift from the code.
"""

from __future__ import annotations

from typing import NamedTuple


class Port(NamedTuple):
    direction: str      # "in" | "out"
    topic: str          # relative to the node (~/...) or absolute (/diagnostics)
    msgtype: str
    qos: str            # sensor | reliable
    description: str


IMAGE_IN = (
    Port("in", "~/in/image", "sensor_msgs/msg/Image", "sensor",
         "camera frames (input.transport: raw); remapped to the camera topic"),
    Port("in", "~/in/image/compressed", "sensor_msgs/msg/CompressedImage", "sensor",
         "camera frames (input.transport: compressed)"),
)
DIAGNOSTICS = Port("out", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", "reliable",
                   "OK / WARN / ERROR with rates, drops, latency percentiles, drift (every monitor.diagnostics_period)")

NODES: dict[str, tuple[str, tuple[Port, ...]]] = {
    "camera_monitor": ("input validation, decode, latency and drop accounting per camera (no model)", (
        *IMAGE_IN,
        Port("out", "~/out/latency", "mim_perception_msgs/msg/FrameLatency", "reliable",
             "per frame: decode time, stamp-to-processed latency, cumulative drops"),
        DIAGNOSTICS,
    )),
    "perception": ("the model: detection, segmentation, in-process tracking, drift monitoring", (
        *IMAGE_IN,
        Port("out", "~/out/detections", "vision_msgs/msg/Detection2DArray", "reliable",
             "boxes in camera pixels, class name + score; the input's header"),
        Port("out", "~/out/segmentation", "sensor_msgs/msg/Image", "reliable",
             "mono8 class ids (config/labels.yaml; 255 = ignore), model or camera resolution"),
        Port("out", "~/out/tracks", "mim_perception_msgs/msg/TrackArray", "reliable",
             "Kalman tracks (tentative / confirmed / lost) with ids, velocities"),
        Port("out", "~/out/overlay", "sensor_msgs/msg/Image", "sensor",
             "bgr8 debug overlay, drawn only while something subscribes"),
        Port("out", "~/out/latency", "mim_perception_msgs/msg/FrameLatency", "reliable",
             "per frame: stage times (decode, preprocess, inference, postprocess, tracking, publish), drops"),
        Port("out", "~/out/drift", "mim_perception_msgs/msg/DriftStatus", "reliable",
             "input-distribution drift p-value and level, each time the window is evaluated"),
        DIAGNOSTICS,
    )),
    "tracker": ("optional standalone tracker on another node's detections (graph.standalone_tracker)", (
        Port("in", "~/in/detections", "vision_msgs/msg/Detection2DArray", "reliable",
             "detections; remapped to /<camera>/perception/out/detections"),
        Port("out", "~/out/tracks", "mim_perception_msgs/msg/TrackArray", "reliable", "tracks"),
        Port("out", "~/out/detections", "vision_msgs/msg/Detection2DArray", "reliable",
             "confirmed tracks as detections (id = track id), for consumers of vision_msgs"),
        DIAGNOSTICS,
    )),
}


def resolve(topic: str, namespace: str, node: str) -> str:
    return f"{namespace.rstrip('/')}/{node}/{topic[2:]}" if topic.startswith("~/") else topic
