"""`mim-perception evaluate-tracking`: HOTA / MOTA / IDF1 (TrackEval) of MOTChallenge-format tracks.

  --gt GT.txt --res RES.txt          score a result file against ground truth
  --gt GT.txt --simulate-detections  simulate detections from the ground truth (seeded noise model from
                                     config/tracker.param.yaml `simulate:`), run the tracker and the SORT
                                     baseline on them in this run, and print both rows

Files: ``frame,id,x,y,w,h,conf,class,vis`` per line (1-based frames, top-left x/y in pixels). Ground-truth rows
with conf 0 are "ignore" regions: they are not scored and result boxes on them (IoU ≥ 0.5) are removed, as in
MOTChallenge. Evaluation is class-agnostic (a track's class does not have to match). A ``seqinfo.ini`` next to
the ``gt/`` folder (MOTChallenge layout) gives frameRate, seqLength, imWidth and imHeight.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mim_perception.evaluation.mot import (
    MotFileError,
    format_table,
    frames_in_run,
    read_mot,
    read_seqinfo,
    score,
    simulate_and_compare,
    write_mot,
)


def main(args: argparse.Namespace) -> int:
    gt_path = Path(args.gt)
    gt = read_mot(gt_path, "ground-truth file")
    if len(gt) == 0:
        raise MotFileError(f"ground-truth file {gt_path} has no rows")
    info = read_seqinfo(gt_path)
    if args.simulate_detections == bool(args.res):
        raise MotFileError("give exactly one of --res RES.txt or --simulate-detections")
    if args.res:
        res = read_mot(args.res, "result file")
        metrics = {Path(args.res).stem: score(gt, res, frames_in_run(gt, info, res))}
    else:
        metrics, tables = simulate_and_compare(gt, info, args.params_file, args.seed, args.frame_rate)
        if args.write_res:
            out = Path(args.write_res)
            out.mkdir(parents=True, exist_ok=True)
            for name, table in tables.items():
                write_mot(out / f"{name}.txt", table)
    print(format_table(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def register(sub: Any, verb: str) -> None:
    p = sub.add_parser(verb, help="HOTA / MOTA / IDF1 of MOTChallenge-format tracks (TrackEval)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", required=True, help="ground truth, MOTChallenge gt.txt")
    p.add_argument("--res", help="tracker output to score, MOTChallenge format")
    p.add_argument("--simulate-detections", action="store_true",
                   help="simulate detections from the ground truth and compare the tracker with the SORT baseline")
    p.add_argument("--params-file", help="parameters file applied on top of config/tracker.param.yaml")
    p.add_argument("--seed", type=int, help="noise-model seed (overrides simulate.seed)")
    p.add_argument("--frame-rate", type=float, help="Hz, when there is no seqinfo.ini")
    p.add_argument("--write-res", metavar="DIR", help="write tracker.txt and sort_baseline.txt (MOTChallenge) here")
    p.add_argument("--json", metavar="PATH", help="also write the metrics as JSON")
    p.set_defaults(func=main)
