"""An imported external detector in the real node graph: detections from its adapter, no segmentation topic, drift on
image statistics only, monitors named on /diagnostics; a bad bundle leaves the node alive reporting ERROR."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from conftest import onnx_constant_model, wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mim_perception.core.config import config_dir
from mim_perception.inference.adapters import grid
from mim_perception.inference.backends import default_model_dir
from mim_perception.inference.external import import_model
from mim_perception.ros import qos
from mim_perception.ros.runner import GraphRunner, graph_from_args

TOPIC = "/cam/ext/image_raw"
H, W = 64, 128


def _yolox_bundle(tmp_path: Path, image_reference: Path | None) -> Path:
    cells, _ = grid(64, 64, (8, 16, 32))
    out = np.zeros((1, len(cells), 85), np.float32)
    k = int(np.flatnonzero((cells[:, 0] == 3) & (cells[:, 1] == 2))[0])
    out[0, k, :5] = [0.5, 0.5, math.log(2.0), math.log(4.0), 0.9]
    out[0, k, 5 + 2] = 0.8                                           # COCO car
    onnx = onnx_constant_model(tmp_path / "y.onnx", [1, 3, 64, 64], {"output": out})
    import_model(onnx, tmp_path / "ext", "yolox", classes="coco",
                 class_map=config_dir() / "class_maps" / "coco_to_driving.yaml", image_reference=image_reference)
    return tmp_path / "ext"


def _params(tmp_path: Path, bundle: Path) -> str:
    p = tmp_path / "p.yaml"
    p.write_text(f"""/**:
  ros__parameters:
    graph: {{camera_monitor: false, perception: true}}
    backend: {{model: "{bundle}", warmup_runs: 1}}
    perception: {{score_threshold: 0.5, drift_every: 1}}
    monitor: {{diagnostics_period: 0.2, min_frames_for_rates: 1000}}
""")
    return str(p)


def _image(stamp: float) -> Image:
    msg = Image(height=H, width=W, encoding="bgr8", step=W * 3)
    msg.data = np.zeros((H, W, 3), np.uint8).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), round((stamp % 1) * 1e9)
    return msg


def test_external_detector_runs_in_the_node(ros_context, probe, tmp_path):
    node, spin = probe
    bundle = _yolox_bundle(tmp_path, default_model_dir() / "image_reference.npz")   # any bundle's image reference serves
    runner = GraphRunner(graph_from_args(_params(tmp_path, bundle), [f"ext={TOPIC}"], None)[1], context=ros_context,
                         threads=3).start()
    try:
        dets: list[Detection2DArray] = []
        diags: list[DiagnosticStatus] = []
        node.create_subscription(Detection2DArray, "/ext/perception/out/detections", dets.append, qos.RELIABLE)
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), qos.RELIABLE)
        pub = node.create_publisher(Image, TOPIC, qos.SENSOR)
        wait_for(lambda: pub.get_subscription_count() > 0, 20, spin, "perception to subscribe")
        t0 = node.get_clock().now().nanoseconds * 1e-9
        for i in range(4):
            pub.publish(_image(t0 + 0.1 * i))
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                spin()
        wait_for(lambda: len(dets) >= 3, 20, spin, "detections")
        d = dets[-1].detections
        assert len(d) == 1 and d[0].results[0].hypothesis.class_id == "car"
        b = d[0].bbox   # model box [20, 4, 36, 36], top-left letterbox at scale 0.5: [40, 8, 72, 72] clipped to y 64
        np.testing.assert_allclose([b.center.position.x, b.center.position.y, b.size_x, b.size_y], [56, 36, 32, 56],
                                   atol=1e-3)
        names = {n for n, _ in node.get_topic_names_and_types()}
        assert "/ext/perception/out/detections" in names and "/ext/perception/out/segmentation" not in names
        wait_for(lambda: any(kv.key == "monitors" for s in diags for kv in s.values), 5, spin, "diagnostics")
        mon = next(kv.value for s in diags for kv in s.values if kv.key == "monitors")
        assert "OOD off" in mon and "drift: image statistics only" in mon
    finally:
        runner.stop()


def test_bad_external_bundle_reports_error_and_the_node_stays_up(ros_context, probe, tmp_path):
    node, spin = probe
    bundle = _yolox_bundle(tmp_path, None)
    with open(bundle / "model.onnx", "ab") as f:
        f.write(b"tampered")
    runner = GraphRunner(graph_from_args(_params(tmp_path, bundle), [f"ext={TOPIC}"], None)[1], context=ros_context,
                         threads=2, keep_failed=True).start()
    try:
        assert runner.failed and "sha256" in runner.failed[0]
        diags: list[DiagnosticStatus] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), qos.RELIABLE)
        wait_for(lambda: any(s.level == DiagnosticStatus.ERROR and "sha256" in s.message for s in diags), 10, spin,
                 "ERROR on /diagnostics")
        n = len(diags)
        wait_for(lambda: len(diags) > n, 5, spin, "the beacon to keep reporting")
    finally:
        runner.stop()


def test_publisher_qos_mismatch_is_reported(ros_context, probe, tmp_path):
    """A subscriber asking reliable delivery of the best-effort overlay gets nothing; the node says so on /diagnostics."""
    node, spin = probe
    bundle = _yolox_bundle(tmp_path, None)
    runner = GraphRunner(graph_from_args(_params(tmp_path, bundle), [f"ext={TOPIC}"], None)[1], context=ros_context,
                         threads=2).start()
    try:
        diags: list[DiagnosticStatus] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(m.status), qos.RELIABLE)
        node.create_subscription(Image, "/ext/perception/out/overlay", lambda m: None, qos.RELIABLE)
        wait_for(lambda: any("QoS mismatch on ~/out/overlay" in s.message for s in diags), 15, spin,
                 "the publisher's QoS event on /diagnostics")
    finally:
        runner.stop()
