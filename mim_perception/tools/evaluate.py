"""`mim-perception evaluate BAG`: replay a drive through the real node graph and report what it did.

    mim-perception evaluate BAG [--gt DIR | --gt-topic TOPIC] [--model DIR] [--fast | --realtime]
                                [--out DIR] [--baseline report.json] [--thresholds gate.yaml]

The bag's camera frames are published into the node graph started in this process (the same graph as
`mim-perception run`); every output of the perception node is recorded into OUT/outputs (MCAP), then scored
against the ground truth: detection mAP/AP50 per class and PR curves, segmentation IoU and confusion matrix,
tracking HOTA/MOTA/IDF1, latency per stage and end to end, drops, drift over time. Writes OUT/report.json,
OUT/report.html (self-contained), OUT/annotated.mp4 and OUT/foxglove (MCAP with ImageAnnotations).

Ground truth: the bag's ``…/ground_truth/detections`` (vision_msgs, ids = track ids) and
``…/ground_truth/segmentation`` (mono8) topics next to the camera's (what `synth --bag`, `simgen` and the
simulator bridge record), or a MOTChallenge directory (``--gt DIR``: gt/gt.txt, seg/NNNNNN.png).
``--fast`` (default) publishes frame k+1 once frame k is answered: nothing is dropped and the numbers equal
the offline evaluators'. ``--realtime`` publishes on the bag's clock, as a camera would.
Several bags (``evaluate A.mcap B.mcap …``) run in parallel, one graph per bag on its own ROS domain, in a
process pool (``--workers``) or as Ray tasks (``--ray-address``); OUT/report.json then scores all their frames
together (and lists each bag's headline); a bag that fails after ``--retries`` is listed and the exit status is 1.
Exit status: 0, 3 when a --thresholds bound is violated, 1 when a bag failed, 2 on errors.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mim_perception.core.config import load_config
from mim_perception.core.errors import BagError, ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.evaluation.driver import FRAME_TIMEOUT_S
from mim_perception.evaluation.records import FrameLog
from mim_perception.scale.fanout import RETRIES


def params_file(out: Path, model: str | None, params: list[str]) -> Path | None:
    """``--param key.sub=value`` (+ ``--model``) as a ROS parameter file applied after config/ (values parsed as YAML)."""
    flat: dict[str, Any] = {}
    if model:
        flat["backend.model"] = str(Path(model).resolve())
    for p in params:
        key, sep, value = p.partition("=")
        if not sep or not key or "." not in key:
            raise ConfigError(f"--param {p!r} must look like section.name=value, e.g. perception.score_threshold=0.1")
        flat[key] = yaml.safe_load(value)
    if not flat:
        return None
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": nested}}))
    return path


def drive_graph(frames: list[tuple[int, bytes, str]], camera: str, image_topic: str, outputs: Path, *, mode: str,
                rate: float = 1.0, user_params: Path | None = None, perception: bool = True,
                frame_timeout: float = FRAME_TIMEOUT_S, ready_timeout: float = 90.0,
                on_start: Callable[[Any], None] | None = None, on_frame: Callable[[int], None] | None = None,
                stop: threading.Event | None = None, domain_id: int | None = None,
                after: Callable[[], None] | None = None) -> FrameLog:
    """Start the node graph in-process, drive it with ``frames`` and record its outputs into ``outputs``.

    ``domain_id``: the ROS domain of this run (None: ROS_DOMAIN_ID / the default)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from mim_perception.evaluation.driver import Driver
    from mim_perception.ros.graph import Camera, GraphConfig, describe, fastdds_env
    from mim_perception.ros.runner import GraphRunner, spin_in_thread

    # with a model, the perception node alone (it measures input too); without one, the input pipeline
    cfg = load_config(GraphConfig, None, {"graph.use_sim_time": False, "graph.perception": perception,
                                          "graph.camera_monitor": not perception}, prefix="graph.")
    os.environ.update(fastdds_env(cfg))
    specs = describe(cfg, [Camera.parse(f"{camera}={image_topic}")], str(user_params) if user_params else None)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    runner = GraphRunner(specs, context=ctx, threads=cfg.executor_threads)
    driver = None
    try:
        runner.start()
        node = rclpy.create_node("mim_evaluate", context=ctx)
        driver = Driver(node, camera, image_topic, frames[0][2], outputs, mode=mode)
        if on_start is not None:
            on_start(node)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        spin_in_thread(ex, "mim-evaluate")
        if not driver.wait_ready(ready_timeout, subscribers=len(runner.nodes), outputs=perception):
            raise BagError(f"the graph did not come up within {ready_timeout:.0f} s (see the node logs above)")
        log = driver.run(frames, rate=rate, frame_timeout=frame_timeout, stop=stop, on_frame=on_frame)
        if after is not None:
            after()
        ex.shutdown()
        node.destroy_node()
        return log
    finally:
        if driver is not None:
            driver.close()
        runner.stop()
        rclpy.try_shutdown(context=ctx)


def analyse(bag: Path, out: Path, log: FrameLog, camera: str, *, gt_dir: Path | None = None,
            gt_topic: str | None = None, model: str | None = None, baseline: Path | None = None,
            thresholds: Path | None = None, video: bool = True, foxglove: bool = True,
            rerun: bool = False) -> dict[str, Any]:
    """Score the recorded outputs, write report.json / report.html (+ video, Foxglove MCAP); returns the report."""
    from mim_perception.core.monitoring.health import MonitorConfig
    from mim_perception.evaluation import media
    from mim_perception.evaluation import report as rep
    from mim_perception.evaluation.records import gt_topics, load_run
    from mim_perception.evaluation.scoring import score_run
    from mim_perception.inference.backends import default_model_dir
    from mim_perception.inference.manifest import load_manifest

    labels = LabelSpace.load()
    _, gts, outs, drift = load_run(bag, out, log, camera, labels, gt_dir=gt_dir, gt_topic=gt_topic)
    monitor = load_config(MonitorConfig, None, prefix="monitor.")
    report = score_run(log, gts, outs, drift, labels, monitor.drift_p_error)
    bundle = Path(model) if model else default_model_dir()
    m = load_manifest(bundle, roles=("onnx",))
    report["bag"], report["model"] = str(bag), f"{m.name}@{m.sha256.get(m.files['onnx'], '')[:12]}"
    report["ground_truth"] = "none" if gts is None else (str(gt_dir) if gt_dir else gt_topic or gt_topics(log.image_topic)[0])
    if baseline is not None:
        report["baseline"] = rep.baseline_diff(report, rep.load_report(baseline))
    if thresholds is not None:
        report["violations"] = rep.check_thresholds(report, rep.load_thresholds(thresholds))
    rep.write_json(out / "report.json", report)
    strip = media.sample_strip(out / "outputs", log, outs, labels)
    png = None
    if strip is not None:
        import cv2

        ok, buf = cv2.imencode(".png", strip)
        png = buf.tobytes() if ok else None
        if png:
            (out / "samples.png").write_bytes(png)
    rep.write_html(out / "report.html", report, png)
    if video:
        fps = 1e9 / max(1, (log.orig_stamps_ns[-1] - log.orig_stamps_ns[0]) / max(1, len(log.orig_stamps_ns) - 1))
        media.write_video(out / "annotated.mp4", out / "outputs", log, outs, labels, fps=min(60.0, fps))
    if foxglove:
        media.write_foxglove(out / "foxglove", out / "outputs", log, outs, labels, camera)
    if rerun:
        from mim_perception.evaluation.rerun_log import write_rerun

        write_rerun(out / "run.rrd", out / "outputs", log, outs, drift, labels, camera)
    return report


def _num(v: Any, sign: str = "") -> str:
    return f"{'–':>10s}" if v is None or math.isnan(v) else f"{v:{sign}10.4g}"   # NaN / null (JSON): a dash


def print_summary(report: dict[str, Any]) -> None:
    print(f"\n{'metric':34s} {'value':>10s}" + (f" {'baseline':>10s} {'delta':>10s}" if "baseline" in report else ""))
    for k, v in report["headline"].items():
        line = f"{k:34s} {_num(v)}"
        if "baseline" in report:
            b = report["baseline"][k]
            line += f" {_num(b['baseline'])} {_num(b['delta'], '+')}"
        print(line)
    for v in report.get("violations") or []:
        print(f"GATE: {v}")


def evaluate_one(task: dict[str, Any]) -> dict[str, Any]:
    """One bag end to end (graph run + scoring) into ``task["out"]``; module-level so it can be a Ray task."""
    from mim_perception.bags.io import bag_summary
    from mim_perception.evaluation.records import image_topic_of, read_frames

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
    log = drive_graph(frames, task["camera"], image_topic, out / "outputs", mode=task["mode"], rate=task["rate"],
                      user_params=params_file(out, task.get("model"), task.get("param") or []),
                      frame_timeout=task["frame_timeout"], domain_id=task["domain_id"])
    log.save(out / "frames.json")
    seconds = time.monotonic() - t0
    report = analyse(bag, out, log, task["camera"], gt_dir=Path(task["gt"]) if task.get("gt") else None,
                     gt_topic=task.get("gt_topic"), model=task.get("model"),
                     baseline=Path(task["baseline"]) if task.get("baseline") else None,
                     thresholds=Path(task["thresholds"]) if task.get("thresholds") else None,
                     video=task["video"], foxglove=task["video"], rerun=task.get("rerun", False))
    return {"bag": str(bag), "out": str(out), "frames": len(frames), "graph_seconds": round(seconds, 2),
            "headline": report["headline"], "violations": report.get("violations")}


def _tasks(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    from mim_perception.ros.graph import private_domain_id

    base = private_domain_id() if args.domain_id is None else args.domain_id
    many = len(args.bag) > 1
    return [{"bag": b, "out": str(out / f"{i:03d}_{Path(b).name}" if many else out), "camera": args.camera,
             "image_topic": args.image_topic, "max_frames": args.max_frames,
             "mode": "realtime" if args.realtime else "fast", "rate": args.rate, "model": args.model, "param": args.param,
             "frame_timeout": args.frame_timeout, "domain_id": 120 + (base - 120 + i) % 100 if many else base,
             "gt": args.gt, "gt_topic": args.gt_topic, "baseline": None if many else args.baseline,
             "thresholds": None if many else args.thresholds, "video": not args.no_video, "rerun": args.rerun}
            for i, b in enumerate(args.bag)]


def run(args: argparse.Namespace) -> int:
    from mim_perception.evaluation.report import write_json

    out = Path(args.out)
    tasks = _tasks(args, out)
    print(f"evaluate: {len(tasks)} bag(s), mode {tasks[0]['mode']}" +
          (f", Ray at {args.ray_address}" if args.ray_address else f", {args.workers} worker(s)"), flush=True)
    if len(tasks) == 1 and not args.ray_address:
        result = evaluate_one(tasks[0])
        report = json.loads((out / "report.json").read_text())
    else:
        from mim_perception.evaluation.merge import merge_runs
        from mim_perception.scale.fanout import run_tasks

        outcomes = run_tasks(evaluate_one, tasks, workers=args.workers, ray_address=args.ray_address,
                             retries=args.retries, on_done=lambda o: print(
                                 f"evaluate: {tasks[o.index]['bag']}: " + ("done" if o.ok else f"FAILED: {o.error}"),
                                 flush=True))
        report = merge_runs([o.value for o in outcomes if o.ok],
                            [{"bag": tasks[o.index]["bag"], "error": o.error, "attempts": o.attempts}
                             for o in outcomes if not o.ok], out, args.camera,
                            gt_dir=Path(args.gt) if args.gt else None, gt_topic=args.gt_topic,
                            baseline=Path(args.baseline) if args.baseline else None,
                            thresholds=Path(args.thresholds) if args.thresholds else None)
        result = {"frames": report["frames"]["total"]}
    print_summary(report)
    if args.results:
        write_json(Path(args.results), {"kind": "evaluate", "title": args.title or Path(args.bag[0]).name,
                                        "command": getattr(args, "command_line", "?"), "frames": report["frames"],
                                        "model": report.get("model"), "headline": report["headline"]})
    print(f"evaluate: wrote {out}/report.html, report.json ({result['frames']} frames)")
    if report.get("failed"):
        return 1
    return 3 if report.get("violations") else 0


def register(sub: Any, verb: str) -> None:
    p = sub.add_parser(verb, help="replay a bag through the node graph; accuracy, latency, drops, drift report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag", nargs="+", help="one or more bags; several are evaluated in parallel and merged")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--gt", help="MOTChallenge ground-truth directory (gt/gt.txt, optional seg/) instead of bag topics")
    g.add_argument("--gt-topic", help="ground-truth Detection2DArray topic (default: …/ground_truth/detections)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--fast", action="store_true", help="lockstep, nothing dropped (default)")
    m.add_argument("--realtime", action="store_true", help="publish on the bag's clock; drops are counted")
    p.add_argument("--rate", type=float, default=1.0, help="--realtime playback factor")
    p.add_argument("--model", help="model bundle directory (default: the shipped one)")
    p.add_argument("--param", action="append", metavar="SECTION.NAME=VALUE",
                   help="node parameter override, e.g. perception.score_threshold=0.1 (repeatable)")
    p.add_argument("--camera", default="front", help="camera name (namespace) of the pipeline")
    p.add_argument("--image-topic", help="camera topic in the bag (default: the first …/image_raw[/compressed])")
    p.add_argument("--max-frames", type=int, default=0, help="evaluate only the first N frames (0 = all)")
    p.add_argument("--frame-timeout", type=float, default=FRAME_TIMEOUT_S, help="s to wait for the node's answer to a frame")
    p.add_argument("--out", default="build/evaluate", help="output directory")
    p.add_argument("--domain-id", type=int, help="ROS domain of the run (default: a private one, so no other graph "
                                                  "on this host can interfere; set it to watch the run live)")
    p.add_argument("--baseline", help="report.json of an earlier run: show the differences")
    p.add_argument("--thresholds", help="YAML of metric bounds; violations exit 3 (a regression gate for CI)")
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4 and the Foxglove MCAP")
    p.add_argument("--rerun", action="store_true", help="also write OUT/run.rrd for the rerun.io viewer "
                                                        "(needs rerun-sdk: requirements/viz.txt)")
    p.add_argument("--results", help="also write the headline numbers and this command line to this JSON "
                                     "(docs/results/*.json feed the README's tables: `mim-perception docs`)")
    p.add_argument("--title", help="row title for --results")
    p.add_argument("--workers", type=int, default=1, help="bags evaluated at once (process pool, or Ray local CPUs)")
    p.add_argument("--ray-address", help="evaluate bags as Ray tasks: local | auto | HOST:PORT")
    p.add_argument("--retries", type=int, default=RETRIES, help="retries of a failed bag before it is reported")
    p.set_defaults(func=run)
