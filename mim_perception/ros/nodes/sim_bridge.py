"""sim_bridge: MetaDrive as ROS 2 cameras with ground truth and a sim-time clock (lifecycle node).

Out, per camera NAME of ``sim_bridge.sim.cameras`` (frame_id ``camera_NAME_optical``, stamp = sim time):
  /camera/NAME/image_raw                 sensor_msgs/Image bgr8                (sensor-data QoS)
  /camera/NAME/image_raw/compressed      sensor_msgs/CompressedImage jpeg      (sensor-data QoS)
  /camera/NAME/camera_info               sensor_msgs/CameraInfo                (sensor-data QoS)
  /camera/NAME/ground_truth/detections   vision_msgs/Detection2DArray, id = track id, class_id = class name (reliable)
  /camera/NAME/ground_truth/segmentation sensor_msgs/Image mono8, config/labels.yaml classes, 255 = ignore (reliable)
  /clock                                 rosgraph_msgs/Clock, published before each frame's messages
  /diagnostics                           frames, episodes, reset time, step time, simulator failures
Topic names are the same as the bags written by mim_perception.sim.to_bag, so a recorded simulator run and a
live one look alike to the stack. The simulator runs on its own thread (a step takes a second or more on a
CPU and would block the executor); a simulator exception is logged, counted and followed by a reset, and the
bridge gives up (diagnostics ERROR) only after ``max_consecutive_failures`` in a row.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from mim_perception.core.config import config_dir, rng
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.health import Level, Verdict
from mim_perception.ros import qos
from mim_perception.ros.detection_msgs import arrays_to_detections
from mim_perception.ros.diagnostics import to_array, to_status
from mim_perception.ros.image_msgs import bgr8_to_compressed, numpy_to_image
from mim_perception.ros.lifecycle import MimLifecycleNode, standalone_main
from mim_perception.ros.params import declare_and_load, unknown_overrides
from mim_perception.sim.metadrive_env import MetaDriveConfig, MetaDriveFrame, MetaDriveScene, check_installation
from mim_perception.sim.to_bag import CameraTopics


@dataclass(frozen=True)
class SimBridgeConfig:
    PARAM_FILE: ClassVar[str] = "sim_bridge.param.yaml"
    publish_raw: bool
    publish_compressed: bool
    jpeg_quality: int = field(metadata=rng(1, 100))
    publish_detections: bool
    publish_segmentation: bool
    publish_clock: bool
    realtime_factor: float = field(metadata=rng(0.0, 1000.0))
    frames: int = field(metadata=rng(0, 2**31 - 1))
    max_consecutive_failures: int = field(metadata=rng(1, 1000))
    diagnostics_period: float = field(metadata=rng(0.05, 60.0, unit="s"))
    sim: MetaDriveConfig


@dataclass
class BridgeStats:
    frames: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    failures_reported: int = 0        # failures at the last diagnostics message
    last_error: str = ""
    gave_up: bool = False
    started: float = field(default_factory=time.monotonic)
    step_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100))


def stamp_msg(seconds: float) -> TimeMsg:
    ns = round(seconds * 1e9)
    return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def camera_info(header: Header, camera: dict[str, float]) -> CameraInfo:
    fx, fy, cx, cy = camera["fx"], camera["fy"], camera["cx"], camera["cy"]
    return CameraInfo(header=header, width=int(camera["width"]), height=int(camera["height"]),
                      distortion_model="plumb_bob", d=[0.0] * 5, k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


class SimBridge(MimLifecycleNode):
    def __init__(self, node_name: str = "sim_bridge", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._timer: Any = None
        self.stats = BridgeStats()
        self.scene: MetaDriveScene | None = None
        self.pubs: dict[str, dict[str, Any]] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------
    def configure(self) -> None:
        self.cfg = declare_and_load(self, SimBridgeConfig, prefix="sim_bridge.")
        typos = unknown_overrides(self, ("sim_bridge.",))
        if typos:
            raise ConfigError(f"unknown parameter(s) for sim_bridge: {typos}")
        check_installation(self.cfg.sim.allow_asset_download)   # fails configure with the fix in the message
        self.labels = LabelSpace.load()
        c = self.cfg
        for name in c.sim.cameras:
            t = CameraTopics(name)
            p: dict[str, Any] = {"info": self.lifecycle_publisher(CameraInfo, t.info, qos.SENSOR)}
            if c.publish_raw:
                p["raw"] = self.lifecycle_publisher(Image, t.image, qos.SENSOR)
            if c.publish_compressed:
                p["compressed"] = self.lifecycle_publisher(CompressedImage, t.compressed, qos.SENSOR)
            if c.publish_detections:
                p["det"] = self.lifecycle_publisher(Detection2DArray, t.gt_detections, qos.RELIABLE)
            if c.publish_segmentation:
                p["seg"] = self.lifecycle_publisher(Image, t.gt_segmentation, qos.RELIABLE)
            self.pubs[name] = p
        self.clock_pub = self.plain_publisher(Clock, "/clock", qos.RELIABLE) if c.publish_clock else None
        self.diag_pub = self.plain_publisher(DiagnosticArray, "/diagnostics", qos.RELIABLE)

    def activate(self) -> None:
        self._stop.clear()
        self.stats = BridgeStats()
        self._thread = threading.Thread(target=self._run, name="sim-bridge", daemon=True)
        self._thread.start()
        self._timer = self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)

    def deactivate(self) -> None:
        self.stop_worker(timeout=10.0)
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def cleanup(self) -> None:
        self.deactivate()

    def stop_worker(self, timeout: float) -> bool:
        """Ask the simulator thread to finish its step and close the env; True if it ended within ``timeout``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
            self._thread = None
        return True

    def destroy_node(self) -> None:
        self.stop_worker(timeout=10.0)
        super().destroy_node()

    # -- simulator thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        scene = self.scene = MetaDriveScene(self.cfg.sim, self.labels)
        period = self.cfg.sim.frame_period
        wall0, sim0 = time.monotonic(), None
        try:
            while not self._stop.is_set():
                if self.cfg.frames and self.stats.frames >= self.cfg.frames:
                    self._stop.wait(0.2)
                    continue
                t0 = time.perf_counter()
                try:
                    frames = scene.step()   # resets first when an episode has ended (or after a failure)
                except Exception as e:  # noqa: BLE001 - any simulator failure: log, count, reset, keep running
                    if not self._on_failure(scene, e):
                        return
                    continue
                self.stats.step_ms.append((time.perf_counter() - t0) * 1e3)
                self.stats.consecutive_failures = 0
                self._publish(frames)
                if self.cfg.realtime_factor > 0:   # pace sim time against wall time
                    sim0 = scene.time - period if sim0 is None else sim0
                    ahead = (scene.time - sim0) / self.cfg.realtime_factor - (time.monotonic() - wall0)
                    if ahead > 0:
                        self._stop.wait(ahead)
        finally:
            scene.close()

    def _on_failure(self, scene: MetaDriveScene, e: Exception) -> bool:
        """Count and log a simulator failure; False when the bridge gives up."""
        s = self.stats
        s.failures += 1
        s.consecutive_failures += 1
        s.last_error = f"{type(e).__name__}: {e}"
        self.get_logger().error(f"simulator failure {s.consecutive_failures}/{self.cfg.max_consecutive_failures}: "
                                f"{s.last_error}\n{traceback.format_exc(limit=4)}")
        if s.consecutive_failures >= self.cfg.max_consecutive_failures:
            s.gave_up = True
            self.get_logger().fatal("too many simulator failures in a row; the bridge stops producing frames")
            return False
        if s.consecutive_failures == 1:
            scene.request_reset()         # the episode may be broken: start a new one
        else:
            scene.close()                 # resetting failed too: a fresh env at the next step
        return True

    def _publish(self, frames: dict[str, MetaDriveFrame]) -> None:
        if not frames:
            return
        stamp = stamp_msg(next(iter(frames.values())).stamp)
        if self.clock_pub is not None:   # first, so sim-time nodes never see a frame from their future
            self.clock_pub.publish(Clock(clock=stamp))
        names = self.labels.detection
        for name, f in frames.items():
            p = self.pubs[name]
            header = Header(stamp=stamp, frame_id=f"camera_{name}_optical")
            if "raw" in p:
                p["raw"].publish(numpy_to_image(f.image, "bgr8", header))
            if "compressed" in p:
                p["compressed"].publish(bgr8_to_compressed(f.image, header, "jpeg", self.cfg.jpeg_quality))
            p["info"].publish(camera_info(header, f.camera))
            if "det" in p:
                p["det"].publish(arrays_to_detections(header, f.boxes, np.ones(len(f.boxes), np.float32),
                                                      [names[i] for i in f.labels], [str(i) for i in f.track_ids]))
            if "seg" in p:
                p["seg"].publish(numpy_to_image(f.seg, "mono8", header))
        self.stats.frames += 1

    # -- diagnostics ----------------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        s, scene = self.stats, self.scene
        new_failures = s.failures - s.failures_reported
        s.failures_reported = s.failures
        if s.gave_up:
            level, message = Level.ERROR, f"gave up after {s.consecutive_failures} simulator failures: {s.last_error}"
        elif new_failures:
            level, message = Level.WARN, f"{new_failures} simulator failure(s), reset: {s.last_error}"
        elif s.frames == 0:
            level, message = Level.OK, "starting (the first MetaDrive reset takes tens of seconds)"
        else:
            level, message = Level.OK, "ok"
        ms = np.array(s.step_ms)
        wall = time.monotonic() - s.started
        values = {
            "frames": str(s.frames),
            "frames_per_s": f"{s.frames / wall:.3f}" if wall > 0 else "nan",
            "step_p50_ms": f"{np.median(ms):.1f}" if len(ms) else "nan",
            "failures": str(s.failures),
            "consecutive_failures": str(s.consecutive_failures),
            "last_error": s.last_error,
        }
        if scene is not None:
            values.update({"sim_time_s": f"{scene.time:.3f}", "episode": str(scene.episode),
                           "seed": str(scene.episode_seed), "resets": str(scene.resets),
                           "last_reset_s": f"{scene.last_reset_s:.1f}"})
        return Verdict(level, message, values)

    def _publish_diagnostics(self) -> None:
        status = to_status(self.verdict(), f"{self.get_fully_qualified_name()}: MetaDrive bridge", "metadrive")
        self.diag_pub.publish(to_array([status], self.get_clock().now().to_msg()))


def main(argv: list[str] | None = None) -> int:
    # Images cross a process boundary here: Fast DDS' default UDP transport drops large ones (README, QoS and transport).
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_dir() / "fastdds_large_data.xml"))
    return standalone_main(SimBridge, "sim_bridge", argv)
