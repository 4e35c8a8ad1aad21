"""`mim-perception demo` (what `make demo` runs): replay the bundled real drive through the node graph.

Starts the graph in-process exactly as `mim-perception run` does, replays the bag with its original
timing, prints a live one-line status and, at the end, per-topic rates and latency. The bundled drive is 8.8 s of
a real highway camera (demo/ATTRIBUTION.md); `--bag demo/drive_front` replays the procedural drive with exact
ground truth instead.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.errors import BagError

DEMO_BAG_NAME = "highway_front"


def default_demo_bag() -> Path:
    here = Path(__file__).resolve().parents[2] / "demo" / DEMO_BAG_NAME
    installed = Path(sys.prefix) / "share" / "mim_perception" / "demo" / DEMO_BAG_NAME
    for p in (here, installed):
        if p.exists():
            return p
    raise BagError(f"bundled demo bag not found (looked in {here} and {installed}); pass --bag")


class _Probe:
    """Counts messages and collects latency on the graph's outputs."""

    def __init__(self, node: Any, camera: str, perception: bool) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from mim_perception_msgs.msg import FrameLatency

        from mim_perception.ros import qos

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
            from mim_perception_msgs.msg import DriftStatus, TrackArray
            from vision_msgs.msg import Detection2DArray

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


def _has_model() -> bool:
    from mim_perception.core.errors import ModelLoadError
    from mim_perception.inference.backends import default_model_dir

    try:
        default_model_dir()
    except ModelLoadError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from mim_perception.bags.io import bag_summary
    from mim_perception.evaluation.records import image_topic_of, read_frames
    from mim_perception.tools.evaluate import analyse, drive_graph, print_summary

    bag = Path(args.bag) if args.bag else default_demo_bag()
    image_topic = image_topic_of(bag_summary(bag).topics)
    frames = read_frames(bag, image_topic)
    perception = _has_model()
    out = Path(args.out)
    if (out / "outputs").exists():
        shutil.rmtree(out)   # the demo's own scratch directory: each run replaces the last
    out.mkdir(parents=True, exist_ok=True)
    probes: list[_Probe] = []
    done = threading.Event()
    t0 = time.monotonic()

    def status() -> None:
        # A live line on a terminal; one line per second in logs (CI, pipes).
        cr, end = ("\r", "") if sys.stdout.isatty() else ("", "\n")
        while not done.wait(1.0):
            if probes:
                print(cr + probes[0].status_line(time.monotonic() - t0), end=end, flush=True)
        if probes:
            print(cr + probes[0].status_line(time.monotonic() - t0))

    print(f"demo: replaying {bag} ({len(frames)} frames on {image_topic}) through the node graph")
    printer = threading.Thread(target=status, daemon=True)
    printer.start()
    try:
        log = drive_graph(frames, args.camera, image_topic, out / "outputs", mode="realtime", rate=args.rate,
                          perception=perception, on_start=lambda node: probes.append(_Probe(node, args.camera, perception)),
                          after=lambda: time.sleep(1.5))   # one more diagnostics period: final drop counts
    finally:
        done.set()
        printer.join(timeout=5)
    log.save(out / "frames.json")
    received = _report(probes[0], log, len(frames), perception)
    if perception:
        report = analyse(bag, out, log, args.camera, video=True, foxglove=True)
        print_summary(report)
        print(f"\ndemo: wrote {out}/annotated.mp4, {out}/report.html (open in a browser), {out}/foxglove (MCAP for "
              f"Foxglove) in {time.monotonic() - t0:.0f} s")
    return 0 if received >= len(frames) * args.min_fraction else 1


def _report(probe: _Probe, log: Any, frames: int, perception: bool) -> int:
    """Print the end-of-run tables; returns the number of frames processed."""
    print(f"\n{'topic':50s} {'msgs':>6s} {'rate Hz':>8s}")
    for topic, n, hz in probe.summary():
        print(f"{topic:50s} {n:6d} {hz:8.2f}")
    lat = np.asarray(probe.latency_ms, np.float64)
    dec = np.asarray(probe.decode_ms, np.float64)
    if len(lat):
        print(f"\npipeline latency (stamp -> processed): p50 {np.percentile(lat, 50):.2f} ms, "
              f"p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.2f} ms; "
              f"decode p50 {np.nanpercentile(dec, 50):.2f} ms")
    received = len(lat)
    if log.publish_wall_ns:
        print(f"replay: {len(log.stamps_ns)} frames in {(log.publish_wall_ns[-1] - log.publish_wall_ns[0]) / 1e9:.2f} s")
    # The node's own counters: every frame it received is processed or dropped, and gaps in the stamps count the
    # frames superseded in its depth-1 queue. Frames sent before its subscription matched (best-effort, as cameras
    # publish) never reach it and precede the first stamp it could count a gap from: reported, not hidden. This
    # demo's own subscriptions may also match after the first outputs are published, so it may see fewer.
    superseded, busy, malformed = probe.drops
    processed = probe.node_received - busy - malformed if probe.node_received else received
    unseen = frames - probe.node_received - superseded if probe.node_received else 0
    print(f"frames processed: {processed}/{frames}; drops (superseded, busy, malformed): {probe.drops}; "
          f"never received (sent before the node's subscription matched): {unseen}; outputs seen by the demo: "
          f"{received}")
    if perception:
        per_class = ", ".join(f"{k} {v}" for k, v in sorted(probe.objects.items())) or "none"
        print(f"detections per class: {per_class}; confirmed tracks: {len(probe.track_ids)}")
    else:
        print("no model bundle in models/: ran the input pipeline only (camera_monitor)")
    return processed


def register(sub: Any, verb: str) -> None:
    p = sub.add_parser(verb, help="replay the bundled driving bag through the node graph and report")
    p.add_argument("--bag", help="bag to replay instead of the bundled demo drive")
    p.add_argument("--camera", default="front", help="camera name (namespace) for the pipeline")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--out", default="build/demo", help="where the video, report and recordings go (replaced)")
    p.add_argument("--min-fraction", type=float, default=0.5,
                   help="exit 1 if fewer than this fraction of the bag's frames were processed")
    p.set_defaults(func=run)
