"""The perception node's frame slot under both executors: `mim-perception run` (multi-threaded) and `ros2 launch`
(single-threaded, what console scripts use). A slow model gets the newest frame as soon as it frees, every frame is
processed or counted, the two paths count alike, and /diagnostics keeps coming while the model works."""

from __future__ import annotations

import time

from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import FrameLatency
from test_perception_graph import TOPIC, _camera, _collect, _image, _params

from mim_perception.ros.runner import GraphRunner, graph_from_args


def _burst(ros_context, probe, tiny_bundle, tmp_path, monkeypatch, single: bool) -> tuple[int, int, int]:
    from mim_perception.inference.ort_backend import OrtBackend

    real = OrtBackend.infer

    def slow(self, batch):   # 150 ms a frame against a 30 Hz camera
        time.sleep(0.15)
        return real(self, batch)

    monkeypatch.setattr(OrtBackend, "infer", slow)
    node, spin = probe
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3, single_threaded=single).start()
    try:
        lat: list[FrameLatency] = []
        diag_times: list[float] = []
        _collect(node, "/front/perception/out/latency", FrameLatency, lat)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag_times.append(time.monotonic()), 10)
        pub = _camera(node, spin)
        t0 = node.get_clock().now().nanoseconds * 1e-9
        n = 30
        start = time.monotonic()
        for i in range(n):
            pub.publish(_image(t0 + i / 30, i))
            end = time.monotonic() + 1 / 30
            while time.monotonic() < end:
                spin()
        burst = (start, time.monotonic())
        time.sleep(0.3)
        pub.publish(_image(t0 + n / 30, n))
        wait_for(lambda: lat and abs(lat[-1].header.stamp.sec + lat[-1].header.stamp.nanosec * 1e-9 - (t0 + n / 30))
                 < 1e-6, 10, spin, "the last frame to be processed")
        last = lat[-1]
        dropped = last.dropped_busy + last.dropped_superseded
        assert len(lat) + dropped == n + 1, "every frame is processed or counted as dropped"
        # the diagnostics timer (0.2 s) is never blocked by the 150 ms inferences of the worker thread
        during = [t for t in diag_times if burst[0] <= t <= burst[1]]
        assert len(during) >= 3, f"{len(during)} diagnostics during a {burst[1] - burst[0]:.1f} s burst"
        return len(lat), last.dropped_busy, last.dropped_superseded
    finally:
        runner.stop()


def test_runner_and_launch_executors_count_alike(ros_context, probe, tiny_bundle, tmp_path, monkeypatch):
    multi = _burst(ros_context, probe, tiny_bundle, tmp_path, monkeypatch, single=False)
    (tmp_path / "launch").mkdir()
    single = _burst(ros_context, probe, tiny_bundle, tmp_path / "launch", monkeypatch, single=True)
    # ~1 s of frames through a 150 ms model: about 7–11 processed (the newest each time), the rest counted; how the
    # 150 ms steps fall against the 33 ms frames on a loaded machine moves the count by a few either way
    for processed, busy, _ in (multi, single):
        assert 5 <= processed <= 12 and busy >= 15
    assert abs(multi[0] - single[0]) <= 5, (multi, single)
