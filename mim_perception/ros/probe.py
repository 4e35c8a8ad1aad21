"""A subscriber that watches a running perception graph: message rates, latency, drops, objects, tracks and the
diagnostics level, for the demo's live status line and the soak bench."""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import DriftStatus, FrameLatency, TrackArray
from vision_msgs.msg import Detection2DArray

from mim_perception.ros import qos


class GraphProbe:
    """Counts messages and collects latency, drops, objects, tracks and diagnostics on the graph's outputs
    (subscriptions on ``node``, which the caller spins)."""

    def __init__(self, node: Any, camera: str, perception: bool) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.latency_ms: list[float] = []
        self.decode_ms: list[float] = []
        self.drops = (0, 0, 0)
        self.node_received = 0   # frames the node received, by its own count
        self.diag_level = -1
        self.diag_message = ""
        self._lock = threading.Lock()
        self.objects: dict[str, int] = defaultdict(int)
        self.track_ids: set[int] = set()
        self.drift_p = math.nan
        # The perception node's latency when it runs (full pipeline), else camera_monitor's (input only).
        stage = "perception" if perception else "camera_monitor"
        self._diag_suffix = ": perception" if perception else ": camera input"
        lat_topic = f"/{camera}/{stage}/out/latency"
        node.create_subscription(FrameLatency, lat_topic, lambda m: self._on_latency(lat_topic, m), qos.RELIABLE)
        if perception:
            det_topic, trk_topic = f"/{camera}/perception/out/detections", f"/{camera}/perception/out/tracks"
            node.create_subscription(Detection2DArray, det_topic, lambda m: self._on_dets(det_topic, m), qos.RELIABLE)
            node.create_subscription(TrackArray, trk_topic, lambda m: self._on_tracks(trk_topic, m), qos.RELIABLE)
            node.create_subscription(DriftStatus, f"/{camera}/perception/out/drift", self._on_drift, qos.RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.RELIABLE)

    def _tick(self, topic: str) -> None:
        now = time.monotonic()
        self.counts[topic] += 1
        self.first.setdefault(topic, now)
        self.last[topic] = now

    def _on_latency(self, topic: str, m: Any) -> None:
        with self._lock:
            self._tick(topic)
            self.latency_ms.append(m.pipeline_ms)
            self.decode_ms.append(m.decode_ms)
            self.drops = (m.dropped_superseded, m.dropped_busy, m.dropped_malformed)
            self.node_received = max(self.node_received, m.frames_received)

    def _on_dets(self, topic: str, m: Any) -> None:
        with self._lock:
            self._tick(topic)
            for d in m.detections:
                self.objects[d.results[0].hypothesis.class_id if d.results else "?"] += 1

    def _on_tracks(self, topic: str, m: Any) -> None:
        with self._lock:
            self._tick(topic)
            self.track_ids.update(t.id for t in m.tracks if t.state == 1)

    def _on_drift(self, m: Any) -> None:
        self.drift_p = float(m.drift_p_value)

    def _on_diag(self, m: Any) -> None:
        with self._lock:
            self._tick("/diagnostics")
            for s in m.status:
                if not s.name.endswith(self._diag_suffix):
                    continue
                self.diag_level = int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level)
                self.diag_message = s.message
                v = {kv.key: kv.value for kv in s.values}
                if "dropped_busy" in v:   # periodic: also covers drops after the last processed frame
                    self.drops = (int(v["dropped_superseded"]), int(v["dropped_busy"]), int(v["dropped_malformed"]))
                    self.node_received = max(self.node_received, int(v.get("frames_received", "0")))

    def status_line(self, elapsed: float) -> str:
        with self._lock:
            n = len(self.latency_ms)
            lat = np.asarray(self.latency_ms[-100:], np.float64)
        p50, p99 = (np.percentile(lat, [50, 99]) if n else (math.nan, math.nan))
        level = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}.get(self.diag_level, "-")
        objs = f" objects={sum(self.objects.values())} tracks={len(self.track_ids)} drift_p={self.drift_p:.2g}" \
            if self.objects or self.track_ids else ""
        return (f"t={elapsed:5.1f}s frames={n:4d} fps={n / max(elapsed, 1e-9):5.1f} "
                f"latency p50={p50:6.2f} p99={p99:6.2f} ms drops={sum(self.drops)}{objs} diag={level}")

    def summary(self) -> list[tuple[str, int, float]]:
        with self._lock:
            rows = []
            for topic, n in sorted(self.counts.items()):
                span = self.last[topic] - self.first[topic]
                rows.append((topic, n, (n - 1) / span if n > 1 and span > 0 else math.nan))
            return rows
