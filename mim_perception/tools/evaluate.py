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
from pathlib import Path
from typing import Any

from mim_perception.evaluation.driver import FRAME_TIMEOUT_S
from mim_perception.evaluation.graph_driver import evaluate_one
from mim_perception.evaluation.merge import merge_runs
from mim_perception.evaluation.report import summary_table, write_json
from mim_perception.ros.graph import private_domain_id
from mim_perception.scale.fanout import RETRIES, run_tasks


def _tasks(args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
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
    out = Path(args.out)
    tasks = _tasks(args, out)
    print(f"evaluate: {len(tasks)} bag(s), mode {tasks[0]['mode']}" +
          (f", Ray at {args.ray_address}" if args.ray_address else f", {args.workers} worker(s)"), flush=True)
    if len(tasks) == 1 and not args.ray_address:
        result = evaluate_one(tasks[0])
        report = json.loads((out / "report.json").read_text())
    else:
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
    print("\n" + summary_table(report))
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
