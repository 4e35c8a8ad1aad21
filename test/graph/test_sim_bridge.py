"""sim_bridge in-process with real MetaDrive: camera frames, ground truth and /clock arrive; a simulator error is
counted, reported and followed by a reset. Slow (MetaDrive's first reset takes 15-60 s on 2 CPU cores)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from conftest import wait_for

from mim_perception.core.labels import IGNORE, LabelSpace

pytestmark = pytest.mark.slow


def _unavailable() -> str | None:
    if importlib.util.find_spec("metadrive") is None:
        return "metadrive is not installed (make sim-setup)"
    from mim_perception.sim.metadrive_env import SimulatorError, check_installation

    try:
        check_installation(allow_download=False)
    except SimulatorError as e:
        return str(e)
    return None


def _stamp(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


@pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))
@pytest.mark.timeout(900)
def test_sim_bridge_publishes_camera_ground_truth_clock_and_survives_a_failure(ros_context):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray

    from mim_perception.ros import qos
    from mim_perception.ros.nodes.sim_bridge import SimBridge

    overrides = {"sim.width": 320, "sim.height": 192, "sim.cameras": '["front"]', "sim.pedestrians": 2,
                 "sim.cyclists": 1, "diagnostics_period": 0.5}
    args = ["--ros-args"] + [a for k, v in overrides.items() for a in ("-p", f"sim_bridge.{k}:={v}")]
    bridge = SimBridge("sim_bridge", context=ros_context, cli_args=args, use_global_arguments=False)
    probe = rclpy.create_node("probe", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(bridge)
    ex.add_node(probe)
    got: dict[str, list] = {"image": [], "info": [], "det": [], "seg": [], "clock": [], "diag": []}
    probe.create_subscription(Image, "/camera/front/image_raw", got["image"].append, qos.SENSOR)
    probe.create_subscription(CameraInfo, "/camera/front/camera_info", got["info"].append, qos.SENSOR)
    probe.create_subscription(Detection2DArray, "/camera/front/ground_truth/detections", got["det"].append, qos.RELIABLE)
    probe.create_subscription(Image, "/camera/front/ground_truth/segmentation", got["seg"].append, qos.RELIABLE)
    probe.create_subscription(Clock, "/clock", got["clock"].append, qos.RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics",
                              lambda m: got["diag"].extend(s for s in m.status if s.hardware_id == "metadrive"), qos.RELIABLE)
    spin = lambda: ex.spin_once(timeout_sec=0.05)  # noqa: E731
    labels = LabelSpace.load()
    try:
        bridge.bring_up()
        wait_for(lambda: all(len(got[k]) >= 2 for k in ("image", "info", "det", "seg", "clock")), 300, spin,
                 "two frames of camera, camera_info, ground truth and /clock (includes MetaDrive's first reset)")
        img, seg, info = got["image"][-1], got["seg"][-1], got["info"][-1]
        assert (img.height, img.width, img.encoding) == (192, 320, "bgr8") and len(img.data) == 192 * 320 * 3
        assert img.header.frame_id == "camera_front_optical"
        pixels = np.frombuffer(seg.data, np.uint8).reshape(192, 320)
        assert seg.encoding == "mono8" and set(np.unique(pixels)) <= set(range(len(labels.segmentation))) | {IGNORE}
        assert (pixels == labels.seg_index("road")).mean() > 0.1 and (pixels == labels.seg_index("sky")).mean() > 0.1
        assert info.k[0] > 0 and info.k[2] == pytest.approx(160.0) and info.k[5] == pytest.approx(96.0)
        det_stamps = {_stamp(d) for d in got["det"]}
        assert any(_stamp(i) in det_stamps for i in got["image"]), "ground truth shares its frame's stamp"
        clock = [c.clock.sec + c.clock.nanosec * 1e-9 for c in got["clock"]]
        assert clock == sorted(clock) and clock[0] > 0
        for d in got["det"]:
            for det in d.detections:
                assert int(det.id) > 0 and det.results[0].hypothesis.class_id in labels.detection
                assert 0 <= det.bbox.center.position.x <= 320 and det.bbox.size_x > 0
        assert any(d.detections for d in got["det"]), "the default traffic puts vehicles in view"

        # A simulator exception mid-episode: counted, reported (WARN), reset, frames resume with later stamps.
        env, real_step = bridge.scene.env, bridge.scene.env.step
        calls = {"n": 0, "sim_time": 0.0}

        def failing_once(*a, **k):
            calls["n"] += 1
            if calls["n"] == 1:
                calls["sim_time"] = bridge.scene.time    # the last frame published before the failure
                raise RuntimeError("injected simulator failure")
            return real_step(*a, **k)

        env.step = failing_once
        wait_for(lambda: bridge.stats.failures == 1, 60, spin, "the injected failure")
        wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "injected" in s.message for s in got["diag"]), 30, spin,
                 "a WARN diagnostic naming the failure")
        wait_for(lambda: any(_stamp(i) > calls["sim_time"] + 1e-6 for i in got["image"]), 300, spin, "frames after the reset")
        assert bridge.scene.resets >= 2 and bridge.stats.consecutive_failures == 0 and not bridge.stats.gave_up
        assert os.environ.get("PYTHONUTF8") in (None, "0", "1"), "MetaDrive's PYTHONUTF8=on must not leak to child processes"
    finally:
        assert bridge.stop_worker(timeout=180.0), "the simulator thread did not stop"
        ex.shutdown()
        probe.destroy_node()
        bridge.destroy_node()
