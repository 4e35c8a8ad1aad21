"""Malformed camera input to the perception node: each class is dropped, counted and reported as WARN with its
reason on /diagnostics, and the node keeps running (a good frame afterwards is processed). The README's reliability
table lists what each class produces."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticStatus
from mim_perception_msgs.msg import FrameLatency
from sensor_msgs.msg import Image
from test_perception_graph import TOPIC, _camera, _collect, _collect_diagnostics, _image, _params

from mim_perception.ros.runner import GraphRunner, graph_from_args


def _raw(w: int, h: int, stamp: float, encoding: str = "bgr8", data: bytes | None = None) -> Image:
    msg = Image(height=h, width=w, encoding=encoding, step=w * 3)
    msg.data = data if data is not None else bytes(w * h * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), round((stamp % 1) * 1e9)
    return msg


CASES = {
    "zero-size image": (lambda t: _raw(0, 0, t), "undecodable image"),
    "1×1 image": (lambda t: _raw(1, 1, t), "below input.min_side"),
    "zero stamp": (lambda t: _image(0.0, 1), "header.stamp is zero"),
    "unknown encoding": (lambda t: _raw(8, 8, t, encoding="yuv_weird"), "undecodable image"),
    "truncated data": (lambda t: _raw(64, 48, t, data=bytes(100)), "undecodable image"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_warns_with_the_reason_and_the_node_keeps_running(ros_context, probe, tiny_bundle, tmp_path,
                                                                           case):
    node, spin = probe
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        diags: list[DiagnosticStatus] = []
        lat: list[FrameLatency] = []
        _collect_diagnostics(node, "front", diags)
        _collect(node, "/front/perception/out/latency", FrameLatency, lat)
        pub = _camera(node, spin)
        make, reason = CASES[case]
        t0 = node.get_clock().now().nanoseconds * 1e-9
        pub.publish(make(t0))
        wait_for(lambda: any(d.level == DiagnosticStatus.WARN and reason in d.message for d in diags), 10, spin,
                 f"WARN naming {reason!r}")
        time.sleep(0.1)
        pub.publish(_image(t0 + 0.5, 2))
        wait_for(lambda: len(lat) >= 1, 10, spin, "a good frame processed after the bad one")
        assert lat[-1].dropped_malformed == 1
        values = {kv.key: kv.value for kv in diags[-1].values}
        assert reason in values["malformed_by_reason"]
        assert runner.nodes[0].stats.drops.malformed == 1 and np.isfinite(lat[-1].pipeline_ms)
    finally:
        runner.stop()


def test_parameters_cannot_be_changed_silently_at_run_time(ros_context, tiny_bundle, tmp_path):
    from rclpy.parameter import Parameter

    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=2).start()
    try:
        node = runner.nodes[0]
        result = node.set_parameters([Parameter("perception.score_threshold", value=0.9)])[0]
        assert not result.successful and "read-only" in result.reason.lower()
        assert node.get_parameter("perception.score_threshold").value == 0.0
    finally:
        runner.stop()
