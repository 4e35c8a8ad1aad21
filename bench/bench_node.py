"""End-to-end in-node latency: camera publish -> detections received, in one process, per backend, rate and cameras.

For each configuration the real graph (perception per camera, shipped model) starts in-process on a private ROS
domain; a publisher thread sends 640×384 bgr8 frames of procedural drives to every camera at the given rate,
stamped at publish; a subscriber records when each camera's detections arrive. Per configuration: frames offered /
answered, drops (counted by the node), latency p50/p99/max (publish -> detections received), and the node's own
stage breakdown (decode, preprocess, inference, postprocess, tracking, publish) with the share of the frame time
that is not inference. Ratios are against the first configuration of the same run.

    .venv/bin/python bench/bench_node.py [--seconds 10] [--configs ort:1:10 ort:1:30 int8:4:10 ...] [--json OUT]

Backends: ``ort`` (ONNX Runtime fp32, the CPU default), ``int8`` (the bundle's int8 ONNX model), ``torch``
(PyTorch CUDA graphs; needs a GPU); ``-noood`` variants turn the MIM OOD scorer off (its cost). Cameras of one
process share one loaded model. ``--keep-awake`` runs a ``nice 19`` busy loop beside the graph: on VMs that halt
idle vCPUs the pipeline otherwise stalls whenever it idles between frames (README, "Perception node and
backends"); the numbers are reported with the flag so that artefact is visible, not hidden.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from mim_perception_msgs.msg import FrameLatency
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from mim_perception.core.config import load_config, override_params_file
from mim_perception.ros import qos
from mim_perception.ros.graph import Camera, GraphConfig, describe, fastdds_env, private_domain_id
from mim_perception.ros.image_msgs import numpy_to_image
from mim_perception.ros.runner import GraphRunner, spin_in_thread

DEFAULT = ["ort:1:10", "ort:1:30", "ort:1:60", "ort-noood:1:30", "int8:1:10", "int8:1:30", "int8:1:60",
           "int8-noood:1:30", "ort:4:10", "int8:4:10", "int8:8:10", "int8:8:30"]
STAGES = ("decode", "preprocess", "inference", "postprocess", "tracking", "publish")
BACKEND_PARAMS = {"ort": ["backend.kind=onnxruntime"], "int8": ["backend.kind=onnxruntime", "backend.int8_onnx=true"],
                  "torch": ["backend.kind=torch", "backend.precision=fp16"],
                  # the same without the MIM OOD scorer (what monitoring costs)
                  "ort-noood": ["backend.kind=onnxruntime", "perception.ood_every=0"],
                  "int8-noood": ["backend.kind=onnxruntime", "backend.int8_onnx=true", "perception.ood_every=0"],
                  "ort-1thread": ["backend.kind=onnxruntime", "backend.intra_op_threads=1"]}


def frames(n: int = 30) -> list[np.ndarray]:
    from mim_perception.sim.synthetic import SceneConfig, SyntheticScene

    return [f.image for f in SyntheticScene(SceneConfig(frames=n, seed=11)).frames()]


def model_only(model: str | None, image: np.ndarray, runs: int = 20) -> dict[str, float]:
    """Peers on the same input: the shipped model in eager PyTorch (CPU, fp32) vs ONNX Runtime fp32 vs int8."""
    import torch

    from mim_perception.core.preprocess import letterbox
    from mim_perception.core.timing import median_ms
    from mim_perception.inference.backends import default_model_dir
    from mim_perception.inference.manifest import INPUT_NAME, load_manifest
    from mim_perception.inference.ort_backend import cpu_session
    from mim_perception.inference.torch_backend import build_export_module

    bundle = Path(model) if model else default_model_dir()
    m = load_manifest(bundle)
    if m.external:   # an imported ONNX detector: ONNX Runtime on its own contract is the only peer
        from mim_perception.inference.adapters import prepare
        from mim_perception.inference.external import open_external

        det, _ = open_external(bundle, os.cpu_count() or 1)
        xe = prepare(image, det.contract)[0]
        return {"ort_fp32": median_ms(lambda: det.run(xe), runs)}
    x = np.ascontiguousarray(letterbox(image, (m.input_height, m.input_width))[0].transpose(2, 0, 1)[None])
    module = build_export_module(bundle, m).float().eval()
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        out = {"torch_eager_fp32": median_ms(lambda: module(xt), runs)}
    for role, name in (("onnx", "ort_fp32"), ("onnx_int8", "ort_int8")):
        if role not in m.files:   # bundles without an int8 model
            continue
        sess = cpu_session(m.path(bundle, role), os.cpu_count() or 1)
        out[name] = median_ms(lambda sess=sess: sess.run(None, {INPUT_NAME: x}), runs)
    return out


class _Recorder:
    """Subscribes to every camera's detections and latency and to /diagnostics; what the run summarises."""

    def __init__(self, node: Any, names: list[str]) -> None:
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], float] = {}
        self.got: dict[str, list[float]] = {n: [] for n in names}
        self.stages: dict[str, list[float]] = {s: [] for s in (*STAGES, "pipeline")}
        self.drops = {n: (0, 0) for n in names}
        self.diag: dict[str, dict[str, str]] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos.RELIABLE)
        for n in names:
            node.create_subscription(Detection2DArray, f"/{n}/perception/out/detections",
                                     lambda m, n=n: self._on_dets(n, m), qos.RELIABLE)
            node.create_subscription(FrameLatency, f"/{n}/perception/out/latency",
                                     lambda m, n=n: self._on_lat(n, m), qos.RELIABLE)

    def _on_dets(self, cam: str, m: Any) -> None:
        now = time.perf_counter()
        with self.lock:
            t = self.sent.pop((cam, m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec), None)
            if t is not None:
                self.got[cam].append((now - t) * 1e3)

    def _on_lat(self, cam: str, m: Any) -> None:
        with self.lock:
            for s in STAGES:
                self.stages[s].append(getattr(m, f"{s}_ms"))
            self.stages["pipeline"].append(m.pipeline_ms)
            self.drops[cam] = (m.frames_received, m.dropped_busy + m.dropped_superseded)

    def _on_diag(self, m: Any) -> None:
        with self.lock:
            for st in m.status:
                if st.hardware_id in self.got and any(kv.key == "model" for kv in st.values):
                    self.diag[st.hardware_id] = {kv.key: kv.value for kv in st.values}


def _wait_subscribed(pubs: dict[str, Any], timeout: float = 30.0) -> None:
    t_wait = time.monotonic()
    while any(p.get_subscription_count() == 0 for p in pubs.values()):
        if time.monotonic() - t_wait > timeout:
            raise RuntimeError(f"perception nodes did not subscribe within {timeout:.0f} s")
        time.sleep(0.05)


def _publish(pubs: dict[str, Any], images: list[np.ndarray], hz: float, seconds: float, rec: _Recorder) -> int:
    """Every camera at ``hz`` for 1 + ``seconds`` s, stamped at publish; the first second warms up and is not
    counted. Returns the frames offered (counted ones)."""
    msgs = [numpy_to_image(im, "bgr8") for im in images]
    period = 1.0 / hz
    offered, warm = 0, max(1, round(hz))
    t_next = time.perf_counter()
    end = t_next + seconds + 1.0
    k = 0
    while t_next < end:
        time.sleep(max(0.0, t_next - time.perf_counter()))
        for n, pub in pubs.items():
            m = msgs[k % len(msgs)]
            now_ns = time.time_ns()
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
            m.header.frame_id = n
            with rec.lock:
                if k >= warm:
                    rec.sent[(n, now_ns)] = time.perf_counter()
                    offered += 1
            pub.publish(m)
        k += 1
        t_next += period
    time.sleep(1.0)   # answers in flight
    return offered


def _summary(backend: str, cameras: int, hz: float, seconds: float, offered: int, rec: _Recorder) -> dict[str, Any]:
    lat = np.concatenate([np.asarray(v) for v in rec.got.values()]) if offered else np.zeros(0)
    answered = len(lat)
    st = {s: float(np.median(v)) if v else float("nan") for s, v in rec.stages.items()}
    mon = [float(d.get("monitoring_p50_ms", "nan")) for d in rec.diag.values()]
    st["monitoring (diagnostics)"] = float(np.nanmean(mon)) if mon else float("nan")
    overhead = sum(st[s] for s in STAGES if s != "inference")
    frame_ms = sum(st[s] for s in STAGES)
    return {"backend": backend, "cameras": cameras, "hz": hz, "offered": offered, "answered": answered,
            "answered_fps": answered / seconds, "unanswered": offered - answered,
            "answered_per_camera": {n: len(v) for n, v in rec.got.items()},
            "node_drops_incl_warmup": int(sum(d for _, d in rec.drops.values())),
            "p50_ms": float(np.percentile(lat, 50)) if answered else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if answered else float("nan"),
            "max_ms": float(lat.max()) if answered else float("nan"),
            "stages_p50_ms": st, "non_inference_share": overhead / frame_ms if frame_ms else float("nan"),
            "ood_scored": sum(int(d.get("ood_scored", "0")) for d in rec.diag.values())}


def run_config(backend: str, cameras: int, hz: float, seconds: float, images: list[np.ndarray], tmp: Path,
               model: str | None, single_threaded: bool = False) -> dict[str, Any]:
    """One configuration: start the graph, publish, record, summarise."""
    names = [f"cam{i}" for i in range(cameras)]
    cfg = load_config(GraphConfig, None, {"graph.use_sim_time": False, "graph.perception": True,
                                          "graph.camera_monitor": False}, prefix="graph.")
    os.environ.update(fastdds_env(cfg))
    user = override_params_file(tmp, model, [f"backend.intra_op_threads={os.cpu_count() or 1}", *BACKEND_PARAMS[backend]])
    specs = describe(cfg, [Camera.parse(f"{n}=/bench/{n}/image_raw") for n in names], str(user) if user else None)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=private_domain_id())
    runner = GraphRunner(specs, context=ctx, threads=max(cfg.executor_threads, 2 * cameras),
                         single_threaded=single_threaded)
    try:
        runner.start()
        node = rclpy.create_node("mim_bench_node", context=ctx)
        rec = _Recorder(node, names)
        pubs = {n: node.create_publisher(Image, f"/bench/{n}/image_raw", qos.SENSOR) for n in names}
        ex = MultiThreadedExecutor(num_threads=2, context=ctx)
        ex.add_node(node)
        spin_in_thread(ex, "mim-bench-node")
        _wait_subscribed(pubs)
        offered = _publish(pubs, images, hz, seconds, rec)
    finally:
        runner.stop()
        rclpy.try_shutdown(context=ctx)
    return _summary(backend, cameras, hz, seconds, offered, rec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=DEFAULT, metavar="BACKEND:CAMERAS:HZ")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model", help="model bundle (default: the shipped one)")
    ap.add_argument("--keep-awake", action="store_true", help="nice-19 busy loop beside the graph (VM idle stalls)")
    ap.add_argument("--single-threaded", action="store_true",
                    help="spin the graph on one single-threaded executor, as `ros2 launch` runs each node")
    ap.add_argument("--json")
    args = ap.parse_args()
    images = frames()
    awake = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"]) if args.keep_awake else None
    rows = []
    try:
        peers = model_only(args.model, images[0])
        ratios = f"; ORT fp32 is {peers['torch_eager_fp32'] / peers['ort_fp32']:.2f}x eager torch" \
            if "torch_eager_fp32" in peers else ""
        print("model only (median ms, same input): " + ", ".join(f"{k} {v:.1f}" for k, v in peers.items()) + ratios,
              flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            for c in args.configs:
                b, n, hz = c.split(":")
                r = run_config(b, int(n), float(hz), args.seconds, images, Path(tmp), args.model, args.single_threaded)
                r["executor"] = "single-threaded" if args.single_threaded else "multi-threaded"
                rows.append(r)
                print(json.dumps(r), flush=True)
    finally:
        if awake is not None:
            awake.kill()
    base = rows[0]["p50_ms"]
    print(f"\n{'backend':>10} {'cams':>4} {'Hz':>4} {'answered':>12} {'fps':>6} {'p50':>7} {'p99':>7} {'max':>7} "
          f"{'infer':>6} {'non-infer':>9} {'p50 vs row 1':>12}")
    for r in rows:
        print(f"{r['backend']:>10} {r['cameras']:>4} {r['hz']:>4.0f} {r['answered']:>5}/{r['offered']:<6} "
              f"{r['answered_fps']:6.1f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['max_ms']:7.1f} "
              f"{r['stages_p50_ms']['inference']:6.1f} {r['non_inference_share']:9.0%} {r['p50_ms'] / base:11.2f}x")
    if args.json:
        from mim_perception.inference.backends import default_model_dir
        from mim_perception.inference.manifest import load_manifest

        name = load_manifest(Path(args.model) if args.model else default_model_dir()).name
        Path(args.json).write_text(json.dumps({"command": " ".join([".venv/bin/python", "bench/bench_node.py",
                                                                     *sys.argv[1:]]), "model": name,
                                               "keep_awake": args.keep_awake, "seconds": args.seconds,
                                               "model_only_ms": peers, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
