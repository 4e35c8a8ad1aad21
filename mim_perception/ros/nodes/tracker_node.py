"""tracker_node: Kalman multi-object tracking of one camera's detections (lifecycle node).

In:  ~/in/detections   vision_msgs/Detection2DArray (reliable)
Out: ~/out/tracks      mim_perception_msgs/TrackArray (confirmed tracks, plus lost/tentative ones if configured)
     ~/out/detections  vision_msgs/Detection2DArray of the confirmed tracks, ``id`` = track id
     /diagnostics      resets (stamp backwards / forward gap) with their reason, dropped invalid boxes,
                       track counts, update time
Every output carries the input's header (stamp and frame_id); ``dt`` comes from those stamps. The node only
converts messages and parameters; all tracking is mim_perception.core.tracking.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import TrackArray
from rclpy.time import Time
from vision_msgs.msg import Detection2DArray

from mim_perception.core.config import rng
from mim_perception.core.errors import ConfigError
from mim_perception.core.monitoring.health import Level, Verdict
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig, TrackState
from mim_perception.core.types import Detections
from mim_perception.ros import qos
from mim_perception.ros.detection_msgs import detections_to_arrays
from mim_perception.ros.diagnostics import to_array, to_status
from mim_perception.ros.lifecycle import MimLifecycleNode, standalone_main
from mim_perception.ros.params import declare_and_load, unknown_overrides
from mim_perception.ros.stamps import stamp_seconds
from mim_perception.ros.track_msgs import ClassVocabulary, tracks_to_detections, tracks_to_msg


@dataclass(frozen=True)
class TrackerNodeConfig:
    PARAM_FILE: ClassVar[str] = "tracker.param.yaml"
    diagnostics_period: float = field(metadata=rng(0.05, 60.0, unit="s"))
    publish_lost: bool
    publish_tentative: bool


class TrackerNode(MimLifecycleNode):
    def __init__(self, node_name: str = "tracker", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self.tracker: Tracker | None = None
        self.update_ms: deque[float] = deque(maxlen=300)
        self._reported = (0, 0, 0)  # (resets, dropped invalid, dropped excess) at the last diagnostics message

    def configure(self) -> None:
        self.cfg = declare_and_load(self, TrackerConfig, prefix="tracker.")
        self.node_cfg = declare_and_load(self, TrackerNodeConfig, prefix="tracker_node.")
        typos = unknown_overrides(self, ("tracker.", "tracker_node."))
        if typos:
            raise ConfigError(f"unknown parameter(s) for the tracker: {typos}")
        self.tracker = Tracker(self.cfg)
        self.vocab = ClassVocabulary()
        self.hardware_id = self.get_namespace().strip("/") or "camera"
        self.tracks_pub = self.lifecycle_publisher(TrackArray, "~/out/tracks", qos.RELIABLE)
        self.det_pub = self.lifecycle_publisher(Detection2DArray, "~/out/detections", qos.RELIABLE)
        self.diag_pub = self.plain_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)
        publish = [TrackState.CONFIRMED]
        if self.node_cfg.publish_lost:
            publish.append(TrackState.LOST)
        if self.node_cfg.publish_tentative:
            publish.append(TrackState.TENTATIVE)
        self._publish_states = np.array(publish, np.uint8)

    def activate(self) -> None:
        topic = "~/in/detections"
        self._sub = self.create_subscription(Detection2DArray, topic, self._on_detections, qos.RELIABLE,
                                             event_callbacks=qos.subscription_events(topic, self._report))
        self._timer = self.create_timer(self.node_cfg.diagnostics_period, self._publish_diagnostics)

    def cleanup(self) -> None:
        super().cleanup()
        self.tracker = None

    def _on_detections(self, msg: Detection2DArray) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        boxes, scores, names, _ = detections_to_arrays(msg)
        dets = Detections(boxes, scores, self.vocab.labels(names))
        resets = tracker.stats.resets
        t0 = time.perf_counter()
        tracks = tracker.update(dets, stamp_seconds(msg.header))
        self.update_ms.append((time.perf_counter() - t0) * 1e3)
        if tracker.stats.resets != resets:
            self.get_logger().warning(f"tracker reset: {tracker.stats.last_reset_reason}")
        self.tracks_pub.publish(tracks_to_msg(msg.header, tracks.select(np.isin(tracks.states, self._publish_states)),
                                              self.vocab))
        self.det_pub.publish(tracks_to_detections(msg.header, tracks.confirmed(), self.vocab))

    def verdict(self) -> Verdict:
        """OK normally; WARN while resets or dropped invalid boxes happened since the last report."""
        tracker = self.tracker
        if tracker is None:
            return Verdict(Level.STALE, "not configured", {})
        st = tracker.stats
        problems: list[tuple[Level, str]] = [(Level.ERROR, e) for e in self.errors]
        new_resets, new_dropped, new_excess = (st.resets - self._reported[0], st.dropped_invalid - self._reported[1],
                                               st.dropped_excess - self._reported[2])
        if new_resets:
            problems.append((Level.WARN, f"{new_resets} reset(s): {st.last_reset_reason}"))
        if new_dropped:
            problems.append((Level.WARN, f"{new_dropped} invalid box(es) dropped"))
        if new_excess:
            problems.append((Level.WARN, f"{new_excess} detection(s) over max_detections dropped"))
        self._reported = (st.resets, st.dropped_invalid, st.dropped_excess)
        level = max((lvl for lvl, _ in problems), default=Level.OK)
        message = "; ".join(m for lvl, m in problems if lvl == level) or ("ok" if st.frames else "waiting for detections")
        ms = np.array(self.update_ms)
        values = {
            "frames": str(st.frames),
            "detections": str(st.detections),
            "dropped_invalid": str(st.dropped_invalid),
            "dropped_excess": str(st.dropped_excess),
            "duplicate_stamps": str(st.duplicate_stamps),
            "resets": str(st.resets),
            "resets_backwards": str(st.resets_backwards),
            "resets_gap": str(st.resets_gap),
            "last_reset_reason": st.last_reset_reason,
            "tracks_created": str(st.tracks_created),
            "classes": str(len(self.vocab)),
            "update_p50_ms": f"{np.median(ms):.3f}" if len(ms) else "nan",
            "update_max_ms": f"{ms.max():.3f}" if len(ms) else "nan",
        }
        values.update({f"tracks_{k}": str(v) for k, v in tracker.counts().items()})
        return Verdict(level, message, values)

    def _publish_diagnostics(self) -> None:
        now = self.get_clock().now()
        status = to_status(self.verdict(), f"{self.get_fully_qualified_name()}: tracker", self.hardware_id)
        self.diag_pub.publish(to_array([status], Time(nanoseconds=now.nanoseconds).to_msg()))


def main(argv: list[str] | None = None) -> int:
    return standalone_main(TrackerNode, "tracker", argv)
