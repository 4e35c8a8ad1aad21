"""Audit of an evaluated drive's recorded detections for boxes where nothing can be: entirely above the horizon
(sky, tree tops) or low in the own lane (the empty road just ahead of the camera). A screen for the issue's "no box
on empty road or sky" check; it replaces nothing: look at the annotated video too.

    .venv/bin/python bench/demo_box_audit.py build/demo --horizon 0.5 --lane 0.4 0.6 --lane-top 0.8

Regions are fractions of the camera frame: above the horizon means the box's bottom edge is above ``--horizon``;
low in the own lane means the box's centre is below ``--lane-top`` and between the two ``--lane`` fractions. For the
bundled MIT highway drive (640×360, camera on the dash) the horizon is near 0.55 and the own lane ahead is empty.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from mim_perception.core.labels import LabelSpace
from mim_perception.evaluation.records import FrameLog, output_prefix, outputs_from_bag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="an `evaluate` / `make demo` output folder (frames.json, outputs/)")
    ap.add_argument("--camera", default="front")
    ap.add_argument("--size", type=int, nargs=2, default=(640, 360), metavar=("W", "H"), help="camera frame size")
    ap.add_argument("--horizon", type=float, default=0.5)
    ap.add_argument("--lane", type=float, nargs=2, default=(0.4, 0.6))
    ap.add_argument("--lane-top", type=float, default=0.8)
    args = ap.parse_args(argv)
    log = FrameLog.load(args.run / "frames.json")
    frames, _ = outputs_from_bag(args.run / "outputs", output_prefix(args.camera), log.stamps_ns, LabelSpace.load())
    w, h = args.size
    answered = [i for i, f in enumerate(frames) if f.has_detections]
    sky, lane, boxes = [], [], 0
    for i in answered:
        b = frames[i].boxes
        boxes += len(b)
        cx, cy = (b[:, 0] + b[:, 2]) / 2 / w, (b[:, 1] + b[:, 3]) / 2 / h
        if np.any(b[:, 3] / h < args.horizon):
            sky.append(i)
        if np.any((cy > args.lane_top) & (cx > args.lane[0]) & (cx < args.lane[1])):
            lane.append(i)
    result = {"frames": len(frames), "answered": len(answered), "boxes": boxes,
              "frames_with_box_above_horizon": sky, "frames_with_box_low_in_own_lane": lane,
              "regions": {"horizon": args.horizon, "lane": list(args.lane), "lane_top": args.lane_top}}
    print(json.dumps(result))
    return 0 if not sky and not lane else 1


if __name__ == "__main__":
    sys.exit(main())
