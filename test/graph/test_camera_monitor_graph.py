"""Real rclpy nodes in-process: the runner brings up camera_monitor; frames in -> latency + diagnostics out."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mim_perception_msgs.msg import FrameLatency
from sensor_msgs.msg import Image

from mim_perception.core.errors import MimPerceptionError
from mim_perception.ros import qos
from mim_perception.ros.runner import GraphRunner, graph_from_args

TOPIC = "/cam/test/image_raw"


def _image(stamp_s: float, h: int = 48, w: int = 64) -> Image:
    msg = Image(height=h, width=w, encoding="bgr8", step=w * 3)
    msg.data = np.full((h, w, 3), 7, np.uint8).tobytes()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = round((stamp_s % 1) * 1e9)
    msg.header.frame_id = "cam_optical"
    return msg


@pytest.fixture
def graph(ros_context, probe, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    graph:\n      camera_monitor: true\n      perception: false\n"
                      "    monitor:\n      diagnostics_period: 0.1\n"
                      "      silence_warn: 0.3\n      silence_error: 0.6\n      min_frames_for_rates: 1000\n")
    _, specs = graph_from_args(str(params), [f"test={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=2).start()
    try:
        yield runner, *probe
    finally:
        runner.stop()


def test_frames_produce_latency_and_diagnostics_recover_after_stall(graph):
    runner, probe, spin = graph
    lat: list[FrameLatency] = []
    diags: list[DiagnosticStatus] = []
    probe.create_subscription(FrameLatency, "/test/camera_monitor/out/latency", lat.append, qos.RELIABLE)
    probe.create_subscription(DiagnosticArray, "/diagnostics",
                              lambda m: diags.extend(s for s in m.status if s.hardware_id == "test"), qos.RELIABLE)
    pub = probe.create_publisher(Image, TOPIC, qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, spin, "camera_monitor to subscribe")
    # Before any frame: input silence -> ERROR.
    wait_for(lambda: any(d.level == DiagnosticStatus.ERROR for d in diags), 5, spin, "ERROR before input")
    now = probe.get_clock().now().nanoseconds * 1e-9
    sent = []
    for i in range(40):
        stamp = now + i / 30
        sent.append(stamp)
        pub.publish(_image(stamp))
        for _ in range(2):
            spin()
    wait_for(lambda: len(lat) >= 20, 10, spin, "latency messages")
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in lat]
    assert stamps == sorted(stamps) and all(any(abs(s - t) < 1e-6 for t in sent) for s in stamps)
    assert all(m.header.frame_id == "cam_optical" and m.decode_ms >= 0 and m.camera == "test" for m in lat)
    assert lat[-1].frames_received >= len(lat)
    # Frames flowing -> OK, then a stall -> ERROR within silence_error (+ one diagnostics period), then OK again.
    diags.clear()
    for i in range(10):
        pub.publish(_image(now + (40 + i) / 30))
        spin()
    wait_for(lambda: any(d.level == DiagnosticStatus.OK for d in diags), 5, spin, "OK while frames flow")
    diags.clear()
    wait_for(lambda: any(d.level == DiagnosticStatus.ERROR and "no input" in d.message for d in diags), 3, spin,
             "ERROR after the input stalls")
    diags.clear()
    for i in range(5):
        pub.publish(_image(now + (60 + i) / 30))
        spin()
    wait_for(lambda: any(d.level == DiagnosticStatus.OK for d in diags), 5, spin, "OK after frames resume")


def test_malformed_frames_are_counted_and_node_keeps_running(graph):
    runner, probe, spin = graph
    lat: list[FrameLatency] = []
    probe.create_subscription(FrameLatency, "/test/camera_monitor/out/latency", lat.append, qos.RELIABLE)
    pub = probe.create_publisher(Image, TOPIC, qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 10, spin, "camera_monitor to subscribe")
    bad = _image(1.0)
    bad.encoding = "no_such_encoding"
    truncated = _image(1.1)
    truncated.data = truncated.data[:100]
    for m in (bad, truncated):
        pub.publish(m)
        for _ in range(10):
            spin()
    pub.publish(_image(2.0))
    wait_for(lambda: len(lat) >= 1, 10, spin, "a latency message after malformed frames")
    monitor = runner.nodes[0]
    assert monitor.stats.drops.malformed == 2
    assert lat[-1].dropped_malformed == 2


def test_invalid_parameter_fails_configure_with_its_name(ros_context, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text("/**:\n  ros__parameters:\n    monitor:\n      window: -5\n")
    _, specs = graph_from_args(str(params), [f"test={TOPIC}"], None)
    with pytest.raises(MimPerceptionError, match="monitor.window"):
        GraphRunner(specs, context=ros_context).start()
