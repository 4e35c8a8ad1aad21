"""Drive a running node graph with a bag's camera frames and record everything the perception node publishes.

Two modes. ``realtime``: frames go out on the bag's schedule (scaled by ``rate``) whatever the graph does,
as a camera would; frames the graph cannot keep up with are dropped and counted by the node. ``fast``:
lockstep, frame k+1 is published once the node has answered frame k (its FrameLatency, published last),
so every frame is processed and the run is deterministic; that is the mode whose accuracy equals the
offline evaluators'.

Header stamps keep the bag's spacing in both modes (stamp_k = T0 + (bag stamp_k - bag stamp_0) / rate),
so the tracker sees the same time steps as it would live. The outputs are written, as the raw CDR the
node sent, into an MCAP bag together with the restamped input frames (what Foxglove needs to overlay them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from mim_perception.bags.io import BagWriter, header_stamp_ns, repo_msg_dirs, with_header_stamp
from mim_perception.core.errors import BagError
from mim_perception.evaluation.records import OUTPUTS, FrameLog, output_prefix
from mim_perception.ros import qos
from mim_perception.ros.interfaces import NODES
from mim_perception.ros.replay import message_class

MODES = ("fast", "realtime")
FRAME_TIMEOUT_S = 20.0   # s to wait for the node's answer to one frame (the CLI's default too)


def _output_types() -> dict[str, str]:
    """Perception output name -> message type, from the documented interface table (one source, checked
    against the running node by test_interfaces_table)."""

    ports = {p.topic: p.msgtype for p in NODES["perception"][1] if p.direction == "out"}
    return {kind: ports[f"~/out/{kind}"] for kind in OUTPUTS}


class Driver:
    """Publishes frames on ``image_topic`` from ``node`` (spun by the caller) and records the node's answers."""

    def __init__(self, node: Any, camera: str, image_topic: str, msgtype: str, outputs: Path, *, mode: str) -> None:


        if mode not in MODES:
            raise BagError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode, self.image_topic, self.msgtype = mode, image_topic, msgtype
        self._lock = threading.Lock()
        self._answered: dict[int, int] = {}     # header stamp -> wall ns the latency message arrived
        self._cond = threading.Condition(self._lock)
        self.writer = BagWriter(outputs, "mcap", msg_dirs=repo_msg_dirs())
        self.writer.open()
        # fast mode must not lose a frame on the way in; realtime behaves like a camera driver (sensor QoS)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE) \
            if mode == "fast" else qos.SENSOR
        self.pub = node.create_publisher(message_class(msgtype), image_topic, pub_qos)
        deep = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = []
        for kind, typename in _output_types().items():
            topic = f"{output_prefix(camera)}/{kind}"
            self.writer.add_topic(topic, typename)
            self.subs.append(node.create_subscription(message_class(typename), topic,
                                                      self._recorder(topic, typename, kind == "latency"), deep,
                                                      raw=True))

    def _recorder(self, topic: str, typename: str, is_latency: bool) -> Callable[[bytes], None]:
        def on_message(data: bytes) -> None:
            now = time.time_ns()
            stamp = header_stamp_ns(data)
            with self._cond:
                self.writer.write(topic, typename, stamp, data)
                if is_latency:
                    self._answered[stamp] = now
                    self._cond.notify_all()
        return on_message

    def wait_ready(self, timeout: float, subscribers: int = 1, outputs: bool = True) -> bool:
        """Until ``subscribers`` nodes take the frames and (``outputs``) the perception node publishes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pub.get_subscription_count() >= subscribers and (not outputs or self.subs[0].get_publisher_count()):
                time.sleep(0.3)   # discovery is symmetric but not simultaneous: let the far side match too
                return True
            time.sleep(0.05)
        return False

    def run(self, frames: Sequence[tuple[int, bytes, str]], *, rate: float = 1.0, frame_timeout: float = FRAME_TIMEOUT_S,
            stop: threading.Event | None = None, on_frame: Callable[[int], None] | None = None) -> FrameLog:
        """Publish ``frames`` ((bag stamp ns, CDR, msgtype) in order); returns what was sent and answered when."""
        if not frames:
            raise BagError("no frames to drive the graph with")
        stop = stop or threading.Event()
        first = frames[0][0]
        wall0, mono0 = time.time_ns() + 200_000_000, time.monotonic_ns() + 200_000_000
        log = FrameLog(self.image_topic, [], [], [], [], self.mode, rate)
        for k, (orig, data, _) in enumerate(frames):
            if stop.is_set():
                break
            offset = round((orig - first) / rate)
            stamp = wall0 + offset
            if self.mode == "realtime":
                delay = (mono0 + offset - time.monotonic_ns()) / 1e9
                if delay > 0:
                    stop.wait(delay)
            msg = with_header_stamp(data, stamp)
            with self._cond:
                self.writer.write(self.image_topic, self.msgtype, stamp, msg)
            log.orig_stamps_ns.append(orig)
            log.stamps_ns.append(stamp)
            log.publish_wall_ns.append(time.time_ns())
            self.pub.publish(msg)
            if self.mode == "fast":
                self._wait_answer(stamp, stop, frame_timeout)
            if on_frame is not None:
                on_frame(k)
        # let the last answers arrive (realtime: the frames still in the pipeline)
        end = time.monotonic() + (min(frame_timeout, 3.0) if self.mode == "realtime" else 0.5)
        with self._cond:
            self._cond.wait_for(lambda: log.stamps_ns[-1] in self._answered or stop.is_set(),
                                timeout=max(0.0, end - time.monotonic()))
        time.sleep(0.3)   # outputs published before the latency message of the same frame are already in
        with self._lock:
            log.answer_wall_ns = [self._answered.get(s) for s in log.stamps_ns]
        return log

    def _wait_answer(self, stamp: int, stop: threading.Event, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: stamp in self._answered or stop.is_set(), timeout=timeout)

    def close(self) -> None:
        with self._lock:
            self.writer.close()
