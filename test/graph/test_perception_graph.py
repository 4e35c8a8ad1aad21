"""The perception node in a real rclpy graph with a tiny exported model: outputs on the input's stamp and frame,
boxes in camera pixels, segmentation, tracks, latency and diagnostics; busy frames dropped and counted; the MIM
OOD scorer of a bundle that has one runs beside the pipeline and reaches DriftStatus and diagnostics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mim_perception_msgs.msg import DriftStatus, FrameLatency, TrackArray
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mim_perception.core.errors import MimPerceptionError
from mim_perception.ros import qos
from mim_perception.ros.runner import GraphRunner, graph_from_args

TOPIC = "/cam/front/image_raw"
H, W = 384, 640


def _image(stamp_s: float, seed: int) -> Image:
    msg = Image(height=H, width=W, encoding="bgr8", step=W * 3)
    msg.data = np.random.default_rng(seed).integers(0, 255, (H, W, 3), np.uint8).tobytes()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = round((stamp_s % 1) * 1e9)
    msg.header.frame_id = "front_optical"
    return msg


def _params(tmp_path, bundle, extra: str = "") -> str:
    p = tmp_path / "p.yaml"
    p.write_text(f"""/**:
  ros__parameters:
    graph:
      camera_monitor: false
      perception: true
    backend:
      model: "{bundle}"
      warmup_runs: 1
    perception:
      score_threshold: 0.0
      track_score_threshold: 0.0
      max_detections: 20
    monitor:
      diagnostics_period: 0.2
      min_frames_for_rates: 1000
{extra}""")
    return str(p)


def _collect(node, topic, typ, out):
    node.create_subscription(typ, topic, out.append, qos.RELIABLE)


def _collect_diagnostics(node, hardware_id, out):
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: out.extend(s for s in m.status if s.hardware_id == hardware_id), qos.RELIABLE)


def _camera(node, spin, topic=TOPIC):
    """A camera publisher the perception node has subscribed to."""
    pub = node.create_publisher(Image, topic, qos.SENSOR)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, spin, "perception to subscribe")
    return pub


def test_outputs_keep_stamp_frame_and_camera_pixels(ros_context, probe, tiny_bundle, tmp_path):
    node, spin = probe
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        dets: list[Detection2DArray] = []
        segs: list[Image] = []
        tracks: list[TrackArray] = []
        lat: list[FrameLatency] = []
        diags: list[DiagnosticStatus] = []
        _collect(node, "/front/perception/out/detections", Detection2DArray, dets)
        _collect(node, "/front/perception/out/segmentation", Image, segs)
        _collect(node, "/front/perception/out/tracks", TrackArray, tracks)
        _collect(node, "/front/perception/out/latency", FrameLatency, lat)
        _collect_diagnostics(node, "front", diags)
        pub = _camera(node, spin)
        t0 = node.get_clock().now().nanoseconds * 1e-9
        sent = []
        for i in range(8):
            sent.append(t0 + i * 0.1)
            pub.publish(_image(sent[-1], i))
            end = time.monotonic() + 0.25   # 4 Hz: the tiny model keeps up on any CPU, so nothing is dropped
            while time.monotonic() < end:
                spin()
        wait_for(lambda: len(lat) >= 8 and len(dets) >= 8 and len(segs) >= 8 and len(tracks) >= 8, 20, spin, "outputs")
        for msgs in (dets, segs, tracks, lat):
            got = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]
            assert np.allclose(got, sent, atol=1e-6) and all(m.header.frame_id == "front_optical" for m in msgs)
        boxes = [(d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y)
                 for m in dets for d in m.detections]
        assert boxes, "a random model with threshold 0 produces candidates"
        b = np.array(boxes)
        assert (b[:, 0] >= 0).all() and (b[:, 0] <= W).all() and (b[:, 1] <= H).all() and (b[:, 2:] > 0).all()
        assert all(d.results[0].hypothesis.class_id in ("car", "truck", "bus", "pedestrian", "cyclist", "traffic_cone")
                   for m in dets for d in m.detections)
        assert segs[0].encoding == "mono8" and (segs[0].height, segs[0].width) == (48, 80)
        assert all(m.inference_ms > 0 and m.pipeline_ms > 0 for m in lat) and lat[-1].dropped_busy == 0
        wait_for(lambda: any("model" in {kv.key for kv in d.values} for d in diags), 5, spin, "diagnostics")
        d = next(d for d in diags if any(kv.key == "model" for kv in d.values))
        values = dict((kv.key, kv.value) for kv in d.values)
        assert values["backend"] == "onnxruntime" and values["ood_score"] == "off (no OOD model in bundle)", \
            "a bundle exported without --mim has no OOD model: said in the values, not a fault"
    finally:
        runner.stop()


@pytest.fixture(scope="module")
def ood_bundle(tiny_bundle, tmp_path_factory):
    """The tiny bundle plus an int8 OOD scorer from a random tiny MIM model (`export --attach-ood`)."""
    import shutil

    import torch

    from mim_perception.nets import build_mim
    from mim_perception.training.checkpoint import save_checkpoint
    from mim_perception.training.export import attach_ood

    root = tmp_path_factory.mktemp("ood")
    shutil.copytree(tiny_bundle, root / "bundle")
    torch.manual_seed(1)
    save_checkpoint(root / "mim.pt", build_mim("convnext_smoke"), {})
    m = attach_ood(root / "bundle", root / "mim.pt", ["synthetic:1:20:0:320x192"], frames=20, cache_dir=root / "cache")
    assert {"ood", "ood_reference"} <= set(m.files) and m.metrics["ood_precision"] == "int8"
    _attach_image_reference(root / "bundle")
    return root / "bundle"


def _attach_image_reference(bundle: Path) -> None:
    """An image-statistics reference from frames like the test's own (uniform noise), so the node runs both channels."""
    from dataclasses import replace

    from mim_perception.core.monitoring.drift import DriftReference
    from mim_perception.core.monitoring.image_stats import image_statistics
    from mim_perception.inference.manifest import load_manifest, write_manifest

    m = load_manifest(bundle)
    window = DriftReference.load(bundle / m.files["drift_reference"]).window
    rng = np.random.default_rng(7)
    stats = [image_statistics(rng.integers(0, 255, (H, W, 3), np.uint8)) for _ in range(64 + 2 * window)]
    DriftReference.build(np.array(stats), window=window, sample=64, null_draws=50).save(bundle / "image_reference.npz")
    write_manifest(bundle, replace(m, files=dict(m.files) | {"image_reference": "image_reference.npz"}))


def test_ood_scores_reach_drift_status_and_diagnostics(ros_context, probe, ood_bundle, tmp_path):
    node, spin = probe
    extra = "    perception:\n      drift_every: 1\n      ood_every: 2\n"
    params = _params(tmp_path, ood_bundle)
    Path(params).write_text(Path(params).read_text().replace("    perception:\n", extra, 1))
    _, specs = graph_from_args(params, [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        drift: list[DriftStatus] = []
        diags: list[DiagnosticStatus] = []
        _collect(node, "/front/perception/out/drift", DriftStatus, drift)
        _collect_diagnostics(node, "front", diags)
        pub = _camera(node, spin)
        t0 = node.get_clock().now().nanoseconds * 1e-9
        for i in range(16):
            pub.publish(_image(t0 + i * 0.1, i))
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                spin()
        wait_for(lambda: any(np.isfinite(m.ood_score) for m in drift), 20, spin, "an OOD score on DriftStatus")
        scores = [m.ood_score for m in drift if np.isfinite(m.ood_score)]
        assert all(0.0 <= s <= 1.0 for s in scores) and all(np.isfinite(m.drift_p_value) for m in drift)

        def scored() -> dict[str, str]:
            for d in reversed(diags):
                v = dict((kv.key, kv.value) for kv in d.values)
                if int(v.get("ood_scored", "0")) > 0:
                    return v
            return {}

        wait_for(lambda: bool(scored()), 10, spin, "diagnostics with OOD counters")
        v = scored()
        assert 0.0 <= float(v["ood_score"]) <= 1.0 and int(v["ood_scored"]) + int(v["ood_skipped_busy"]) <= 8
        # both drift channels ran; the published p-value is their Bonferroni combination
        p_emb, p_img = float(v["drift_p_embedding"]), float(v["drift_p_image"])
        assert 0.0 < p_emb <= 1.0 and 0.0 < p_img <= 1.0
        combined = min(1.0, 2 * min(p_emb, p_img))
        wait_for(lambda: any(m.drift_p_value == pytest.approx(combined, rel=1e-2) for m in drift), 5, spin,
                 f"a DriftStatus with p = {combined:.3g}")
    finally:
        runner.stop()


def test_busy_frames_are_dropped_and_counted(ros_context, probe, tiny_bundle, tmp_path, monkeypatch):
    from mim_perception.inference.ort_backend import OrtBackend

    real = OrtBackend.infer

    def slow(self, batch):  # a deliberately slow backend: 150 ms per frame
        time.sleep(0.15)
        return real(self, batch)

    monkeypatch.setattr(OrtBackend, "infer", slow)
    node, spin = probe
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        lat: list[FrameLatency] = []
        _collect(node, "/front/perception/out/latency", FrameLatency, lat)
        pub = _camera(node, spin)
        t0 = node.get_clock().now().nanoseconds * 1e-9
        n = 30
        for i in range(n):   # 30 Hz into a 150 ms pipeline
            pub.publish(_image(t0 + i / 30, i))
            end = time.monotonic() + 1 / 30
            while time.monotonic() < end:
                spin()
        time.sleep(0.3)
        pub.publish(_image(t0 + n / 30, n))   # a last frame after the backlog, so every earlier gap is visible
        wait_for(lambda: lat and abs(lat[-1].header.stamp.sec + lat[-1].header.stamp.nanosec * 1e-9 - (t0 + n / 30)) < 1e-6,
                 10, spin, "the last frame to be processed")
        last = lat[-1]
        dropped = last.dropped_busy + last.dropped_superseded
        assert len(lat) < n / 2 and dropped > n / 2, "the slow backend cannot keep up: most frames are dropped"
        assert len(lat) + dropped == n + 1, "every frame is processed or counted as dropped"
    finally:
        runner.stop()


def test_missing_model_fails_configure_with_the_reason(ros_context, tmp_path):
    _, specs = graph_from_args(_params(tmp_path, tmp_path / "no_such_bundle"), [f"front={TOPIC}"], None)
    with pytest.raises(MimPerceptionError, match="manifest.json not found"):
        GraphRunner(specs, context=ros_context, threads=2).start()


def test_cameras_of_one_process_share_one_loaded_model(ros_context, probe, tiny_bundle, tmp_path):
    node, spin = probe
    topics = {"front": TOPIC, "left": "/cam/left/image_raw"}
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"{n}={t}" for n, t in topics.items()], None)
    runner = GraphRunner(specs, context=ros_context, threads=4).start()
    try:
        backends = {n.get_namespace(): n.perceiver.backend for n in runner.nodes}
        assert set(backends) == {"/front", "/left"} and backends["/front"] is backends["/left"]
        assert backends["/front"].users == 2
        dets: dict[str, list[Detection2DArray]] = {n: [] for n in topics}
        for n in topics:
            _collect(node, f"/{n}/perception/out/detections", Detection2DArray, dets[n])
        pubs = {n: node.create_publisher(Image, t, qos.SENSOR) for n, t in topics.items()}
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20, spin, "both cameras")
        t0 = node.get_clock().now().nanoseconds * 1e-9
        for i in range(4):
            for p in pubs.values():
                p.publish(_image(t0 + i * 0.25, i))
            end = time.monotonic() + 0.25
            while time.monotonic() < end:
                spin()
        wait_for(lambda: all(len(v) >= 4 for v in dets.values()), 20, spin, "detections of both cameras")
    finally:
        runner.stop()


def test_nonfinite_outputs_turn_diagnostics_error_then_warn(ros_context, probe, tiny_bundle, tmp_path, monkeypatch):
    from mim_perception.inference.ort_backend import OrtBackend

    real = OrtBackend.infer
    poison = {"on": True}

    def nan_boxes(self, batch):   # a numerically broken model: NaN in some candidates
        out = real(self, batch)
        if poison["on"]:
            out.boxes[:, :3] = np.nan
        return out

    monkeypatch.setattr(OrtBackend, "infer", nan_boxes)
    node, spin = probe
    _, specs = graph_from_args(_params(tmp_path, tiny_bundle), [f"front={TOPIC}"], None)
    runner = GraphRunner(specs, context=ros_context, threads=3).start()
    try:
        diags: list[DiagnosticStatus] = []
        lat: list[FrameLatency] = []
        _collect(node, "/front/perception/out/latency", FrameLatency, lat)
        _collect_diagnostics(node, "front", diags)
        pub = _camera(node, spin)
        t0 = node.get_clock().now().nanoseconds * 1e-9

        def send(i: int) -> None:
            pub.publish(_image(t0 + i * 0.1, i))
            end = time.monotonic() + 0.1
            while time.monotonic() < end:
                spin()

        send(0)
        wait_for(lambda: any(d.level == DiagnosticStatus.ERROR and "non-finite" in d.message for d in diags), 10, spin,
                 "ERROR for non-finite outputs")
        poison["on"] = False
        n = len(diags)
        k = [1]

        def aged() -> bool:   # keep frames coming, so input silence never masks the message
            send(k[0])
            k[0] += 1
            return any("none recently" in d.message for d in diags[n:])

        wait_for(aged, 15, None, "the fault to age into WARN")
        assert len(lat) >= 2, "the node kept processing"
    finally:
        runner.stop()
