"""`mim-perception evaluate-real`: model bundles (ours and external teachers) on the same held-back real frames.

    mim-perception evaluate-real --model models/NAME --model build/teachers/yolox_nano \\
        --kitti DATA/kitti:60-74 --camvid DATA/camvid:test --json docs/results/real_frames.json

KITTI: 2D AP50 per class (car, pedestrian, cyclist; moderate-like filter, evaluation/real_frames.py); CamVid: IoU per
class and mIoU over road, sidewalk, building, vegetation, sky, vehicle, person (bundles with segmentation); and the
model-only forward time of each bundle, ONNX Runtime with --threads threads, interleaved in the same process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from mim_perception.evaluation.real_frames import evaluate_real, real_frames_markdown
from mim_perception.training.real_sources import CamVidSource, open_real_source


def _main(args: argparse.Namespace) -> int:
    kitti = open_real_source("kitti", args.kitti.split(":")) if args.kitti else None
    camvid = None
    if args.camvid:
        root, _, split = args.camvid.partition(":")
        camvid = CamVidSource(root, split or "test")   # the held-back split unless told otherwise
    frame = cv2.imread(args.timing_frame) if args.timing_frame else (kitti[0].image if kitti else None)
    res = evaluate_real(args.model, kitti, camvid, threads=args.threads, timing_frame=frame)
    res["command"] = args.command_line
    print(real_frames_markdown(res))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1, default=float) + "\n")
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="score bundles (ours and teachers) side by side on real KITTI / CamVid frames",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="BUNDLE", help="model bundle (repeat)")
    p.add_argument("--kitti", metavar="ROOT[:FIRST-LAST]", help="KITTI object folder (image_2, label_2) and frame range")
    p.add_argument("--camvid", metavar="ROOT[:SPLIT]", help="CamVid folder and split (default test)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads per model")
    p.add_argument("--timing-frame", help="image for the forward-time measurement (default: the first KITTI frame)")
    p.add_argument("--json", help="write the results here (e.g. docs/results/real_frames.json)")
    p.set_defaults(func=_main)
