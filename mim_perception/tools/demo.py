"""`mim-perception demo` (what `make demo` runs): replay the bundled real drive through the node graph.

Starts the graph in-process exactly as `mim-perception run` does, replays the bag with its original
timing, prints a live one-line status and, at the end, per-topic rates and latency. The bundled drive is 8.8 s of
a real highway camera (demo/ATTRIBUTION.md); `--bag demo/drive_front` replays the procedural drive with exact
ground truth instead.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.bags.io import bag_summary, default_demo_bag
from mim_perception.core.errors import ModelLoadError
from mim_perception.evaluation.graph_driver import DriveConfig, DriveHooks, ReportConfig, analyse, drive_graph
from mim_perception.evaluation.records import image_topic_of, read_frames
from mim_perception.evaluation.report import summary_table
from mim_perception.inference.backends import default_model_dir
from mim_perception.ros.probe import GraphProbe


def _has_model() -> bool:
    try:
        default_model_dir()
    except ModelLoadError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    bag = Path(args.bag) if args.bag else default_demo_bag()
    image_topic = image_topic_of(bag_summary(bag).topics)
    frames = read_frames(bag, image_topic)
    perception = _has_model()
    out = Path(args.out)
    if (out / "outputs").exists():
        shutil.rmtree(out)   # the demo's own scratch directory: each run replaces the last
    out.mkdir(parents=True, exist_ok=True)
    probes: list[GraphProbe] = []
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
        log = drive_graph(frames, args.camera, image_topic, out / "outputs",
                          DriveConfig(mode="realtime", rate=args.rate, perception=perception),
                          DriveHooks(on_start=lambda node: probes.append(GraphProbe(node, args.camera, perception)),
                                     after=lambda: time.sleep(1.5)))   # one more diagnostics period: final drop counts
    finally:
        done.set()
        printer.join(timeout=5)
    log.save(out / "frames.json")
    received = _report(probes[0], log, len(frames), perception)
    if perception:
        report = analyse(bag, out, log, args.camera, ReportConfig(video=True, foxglove=True))
        print("\n" + summary_table(report))
        print(f"\ndemo: wrote {out}/annotated.mp4, {out}/report.html (open in a browser), {out}/foxglove (MCAP for "
              f"Foxglove) in {time.monotonic() - t0:.0f} s")
    return 0 if received >= len(frames) * args.min_fraction else 1


def _report(probe: GraphProbe, log: Any, frames: int, perception: bool) -> int:
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
