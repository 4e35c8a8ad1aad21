"""Run a drive through the real node graph in this process and turn what it published into a report.

``drive_graph`` starts the graph (the same one `mim-perception run` starts), publishes a bag's frames into it
through the ``Driver`` and records every output; ``analyse`` scores the recording and writes report.json /
report.html (+ annotated video, Foxglove MCAP, rerun log); ``evaluate_one`` is both for one bag, module-level so
it can be a process-pool or Ray task. The `evaluate` and `demo` verbs are thin wrappers around these.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor

from mim_perception.bags.io import bag_summary
from mim_perception.core.config import load_config, override_params_file
from mim_perception.core.errors import BagError, ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.health import MonitorConfig
from mim_perception.evaluation import media
from mim_perception.evaluation import report as rep
from mim_perception.evaluation.driver import FRAME_TIMEOUT_S, Driver
from mim_perception.evaluation.records import FrameLog, gt_topics, image_topic_of, load_run, read_frames
from mim_perception.evaluation.scoring import score_run
from mim_perception.inference.backends import default_model_dir
from mim_perception.inference.manifest import load_manifest
from mim_perception.ros.graph import Camera, GraphConfig, describe, fastdds_env
from mim_perception.ros.runner import GraphRunner, spin_in_thread


@dataclass(frozen=True)
class DriveConfig:
    """How a drive is run: ``mode`` fast (lockstep) or realtime (the bag's clock × ``rate``); ``user_params`` a ROS
    parameter file applied after config/; ``perception`` False runs the input pipeline only; ``domain_id`` the ROS
    domain (None: ROS_DOMAIN_ID / the default)."""

    mode: str = "fast"
    rate: float = 1.0
    user_params: Path | None = None
    perception: bool = True
    frame_timeout: float = FRAME_TIMEOUT_S
    ready_timeout: float = 90.0
    domain_id: int | None = None


@dataclass
class DriveHooks:
    """Optional calls into a drive: ``on_start(node)`` once the driver's node exists (to add probes),
    ``on_frame(k)`` after each frame, ``after()`` once the last frame is answered; ``stop`` ends it early."""

    on_start: Callable[[Any], None] | None = None
    on_frame: Callable[[int], None] | None = None
    after: Callable[[], None] | None = None
    stop: threading.Event | None = None


@dataclass(frozen=True)
class ReportConfig:
    """What ``analyse`` scores against and writes: ground truth from ``gt_dir`` (MOTChallenge) or ``gt_topic``
    (default: the bag's …/ground_truth topics), the ``model`` bundle named in the report, an optional ``baseline``
    report and ``thresholds`` gate, and which media to write."""

    gt_dir: Path | None = None
    gt_topic: str | None = None
    model: str | None = None
    baseline: Path | None = None
    thresholds: Path | None = None
    video: bool = True
    foxglove: bool = True
    rerun: bool = False


def _start_graph(camera: str, image_topic: str, cfg: DriveConfig, ctx: Context) -> GraphRunner:
    # with a model, the perception node alone (it measures input too); without one, the input pipeline
    graph = load_config(GraphConfig, None, {"graph.use_sim_time": False, "graph.perception": cfg.perception,
                                            "graph.camera_monitor": not cfg.perception}, prefix="graph.")
    os.environ.update(fastdds_env(graph))
    specs = describe(graph, [Camera.parse(f"{camera}={image_topic}")], str(cfg.user_params) if cfg.user_params else None)
    rclpy.init(context=ctx, domain_id=cfg.domain_id)
    runner = GraphRunner(specs, context=ctx, threads=graph.executor_threads)
    runner.start()
    return runner


def drive_graph(frames: list[tuple[int, bytes, str]], camera: str, image_topic: str, outputs: Path,
                cfg: DriveConfig, hooks: DriveHooks | None = None) -> FrameLog:
    """Start the node graph in-process, drive it with ``frames`` and record its outputs into ``outputs``."""
    hooks = hooks or DriveHooks()
    ctx = Context()
    runner: GraphRunner | None = None
    driver = None
    try:
        runner = _start_graph(camera, image_topic, cfg, ctx)
        node = rclpy.create_node("mim_evaluate", context=ctx)
        driver = Driver(node, camera, image_topic, frames[0][2], outputs, mode=cfg.mode)
        if hooks.on_start is not None:
            hooks.on_start(node)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        spin_in_thread(ex, "mim-evaluate")
        if not driver.wait_ready(cfg.ready_timeout, subscribers=len(runner.nodes), outputs=cfg.perception):
            raise BagError(f"the graph did not come up within {cfg.ready_timeout:.0f} s (see the node logs above)")
        log = driver.run(frames, rate=cfg.rate, frame_timeout=cfg.frame_timeout, stop=hooks.stop,
                         on_frame=hooks.on_frame)
        if hooks.after is not None:
            hooks.after()
        ex.shutdown()
        node.destroy_node()
        return log
    finally:
        if driver is not None:
            driver.close()
        if runner is not None:
            runner.stop()
        rclpy.try_shutdown(context=ctx)


def _write_media(bag_out: Path, log: FrameLog, outs: Any, drift: Any, labels: LabelSpace, camera: str,
                 report: dict[str, Any], cfg: ReportConfig) -> None:
    strip = media.sample_strip(bag_out / "outputs", log, outs, labels)
    png = None
    if strip is not None:
        ok, buf = cv2.imencode(".png", strip)
        png = buf.tobytes() if ok else None
        if png:
            (bag_out / "samples.png").write_bytes(png)
    rep.write_html(bag_out / "report.html", report, png)
    if cfg.video:
        fps = 1e9 / max(1, (log.orig_stamps_ns[-1] - log.orig_stamps_ns[0]) / max(1, len(log.orig_stamps_ns) - 1))
        media.write_video(bag_out / "annotated.mp4", bag_out / "outputs", log, outs, labels, fps=min(60.0, fps))
    if cfg.foxglove:
        media.write_foxglove(bag_out / "foxglove", bag_out / "outputs", log, outs, labels, camera)
    if cfg.rerun:
        from mim_perception.evaluation.rerun_log import write_rerun  # noqa: PLC0415 -- rerun-sdk is optional (viz extra)

        write_rerun(bag_out / "run.rrd", bag_out / "outputs", log, outs, drift, labels, camera)


def analyse(bag: Path, out: Path, log: FrameLog, camera: str, cfg: ReportConfig | None = None) -> dict[str, Any]:
    """Score the recorded outputs, write report.json / report.html (+ video, Foxglove MCAP); returns the report."""
    cfg = cfg or ReportConfig()
    labels = LabelSpace.load()
    _, gts, outs, drift = load_run(bag, out, log, camera, labels, gt_dir=cfg.gt_dir, gt_topic=cfg.gt_topic)
    monitor = load_config(MonitorConfig, None, prefix="monitor.")
    report = score_run(log, gts, outs, drift, labels, monitor.drift_p_error)
    m = load_manifest(Path(cfg.model) if cfg.model else default_model_dir(), roles=("onnx",))
    report["bag"], report["model"] = str(bag), f"{m.name}@{m.sha256.get(m.files['onnx'], '')[:12]}"
    report["ground_truth"] = "none" if gts is None else \
        (str(cfg.gt_dir) if cfg.gt_dir else cfg.gt_topic or gt_topics(log.image_topic)[0])
    if cfg.baseline is not None:
        report["baseline"] = rep.baseline_diff(report, rep.load_report(cfg.baseline))
    if cfg.thresholds is not None:
        report["violations"] = rep.check_thresholds(report, rep.load_thresholds(cfg.thresholds))
    rep.write_json(out / "report.json", report)
    _write_media(out, log, outs, drift, labels, camera, report, cfg)
    return report


def evaluate_one(task: dict[str, Any]) -> dict[str, Any]:
    """One bag end to end (graph run + scoring) into ``task["out"]``; module-level so it can be a Ray task."""
    bag, out = Path(task["bag"]), Path(task["out"])
    if (out / "outputs").exists():
        raise ConfigError(f"{out} holds a previous evaluation; choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")   # an evaluation never talks to the LAN
    image_topic = task.get("image_topic") or image_topic_of(bag_summary(bag).topics)
    frames = read_frames(bag, image_topic)[: task.get("max_frames") or None]
    if not frames:
        raise BagError(f"{bag}: no frames on {image_topic}")
    t0 = time.monotonic()
    drive = DriveConfig(mode=task["mode"], rate=task["rate"], frame_timeout=task["frame_timeout"],
                        user_params=override_params_file(out, task.get("model"), task.get("param") or []),
                        domain_id=task["domain_id"])
    log = drive_graph(frames, task["camera"], image_topic, out / "outputs", drive)
    log.save(out / "frames.json")
    seconds = time.monotonic() - t0
    report = analyse(bag, out, log, task["camera"], ReportConfig(
        gt_dir=Path(task["gt"]) if task.get("gt") else None, gt_topic=task.get("gt_topic"), model=task.get("model"),
        baseline=Path(task["baseline"]) if task.get("baseline") else None,
        thresholds=Path(task["thresholds"]) if task.get("thresholds") else None,
        video=task["video"], foxglove=task["video"], rerun=task.get("rerun", False)))
    return {"bag": str(bag), "out": str(out), "frames": len(frames), "graph_seconds": round(seconds, 2),
            "headline": report["headline"], "violations": report.get("violations")}
