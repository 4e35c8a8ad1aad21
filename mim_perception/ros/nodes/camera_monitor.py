"""camera_monitor: validates and times every frame of one camera; publishes latency and /diagnostics.

The input half of a perception pipeline on its own: decode (validates the bytes), drop accounting
from stamp gaps, pipeline latency (now - header.stamp), input-silence watchdog. Useful alone to check a
camera, bag or simulator feed before any model runs.
"""

from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import FrameLatency
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image

from mim_perception.core.errors import BadImageError
from mim_perception.core.inputs import InputConfig
from mim_perception.core.monitoring.health import MonitorConfig, judge
from mim_perception.ros import qos
from mim_perception.ros.diagnostics import to_array, to_status
from mim_perception.ros.image_msgs import compressed_to_bgr8, image_to_bgr8
from mim_perception.ros.lifecycle import MimLifecycleNode, standalone_main
from mim_perception.ros.params import declare_and_load
from mim_perception.ros.stamps import stamp_seconds

NAN = math.nan



class CameraMonitor(MimLifecycleNode):
    def __init__(self, node_name: str = "camera_monitor", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)

    def configure(self) -> None:
        self.input = declare_and_load(self, InputConfig, prefix="input.")
        self.monitor = declare_and_load(self, MonitorConfig, prefix="monitor.")
        self.stats = self.monitor.new_stats()
        self.hardware_id = self.input.hardware_id or self.get_namespace().strip("/") or "camera"
        self.latency_pub = self.lifecycle_publisher(FrameLatency, "~/out/latency", qos.RELIABLE)
        self.diag_pub = self.plain_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)

    def activate(self) -> None:
        if self.input.transport == "compressed":
            topic, typ, cb = "~/in/image/compressed", CompressedImage, self._on_compressed
        else:
            topic, typ, cb = "~/in/image", Image, self._on_raw
        self._sub = self.create_subscription(
            typ, topic, cb, qos.SENSOR, event_callbacks=qos.subscription_events(topic, self._report))
        self._timer = self.create_timer(self.monitor.diagnostics_period, self._publish_diagnostics)

    def _on_raw(self, msg: Image) -> None:
        self._process(msg, image_to_bgr8)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._process(msg, compressed_to_bgr8)

    def _process(self, msg: Image | CompressedImage, decode: object) -> None:
        receive = self._now()
        stamp = stamp_seconds(msg.header)
        decode_ms = NAN
        if self.input.decode:
            t0 = time.perf_counter()
            try:
                decode(msg)  # type: ignore[operator]
            except BadImageError as e:
                self.stats.on_malformed(receive, stamp)
                self.get_logger().warning(f"malformed frame dropped: {e}", throttle_duration_sec=2.0)
                return
            decode_ms = (time.perf_counter() - t0) * 1e3
        self.stats.on_frame(stamp, receive)
        out = FrameLatency(header=msg.header, camera=self.hardware_id, decode_ms=decode_ms,
                           preprocess_ms=NAN, inference_ms=NAN, postprocess_ms=NAN, tracking_ms=NAN, publish_ms=NAN)
        done = self._now()
        out.pipeline_ms = self.stats.on_done(stamp, done, {"decode": decode_ms})
        d = self.stats.drops
        out.frames_received, out.dropped_superseded = d.received, d.superseded
        out.dropped_busy, out.dropped_malformed = d.busy, d.malformed
        self.latency_pub.publish(out)

    def _publish_diagnostics(self) -> None:
        verdict = judge(self.stats, self.monitor, self._now(), tuple(self.errors))
        status = to_status(verdict, f"{self.get_fully_qualified_name()}: camera input", self.hardware_id)
        self.diag_pub.publish(to_array([status], Time(seconds=self._now()).to_msg()))


def main(argv: list[str] | None = None) -> int:
    return standalone_main(CameraMonitor, "camera_monitor", argv)
