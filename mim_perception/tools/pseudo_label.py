"""`mim-perception pseudo-label`: teacher detectors over a frame source -> COCO JSON in the stack's classes.

    mim-perception pseudo-label --teacher build/teachers/yolox_nano --teacher build/teachers/nanodet_m \\
        --data camvid:DATA/camvid:train --out build/pseudo/camvid_train.json

Teachers are bundles written by `import-model`. Two or more are fused (weighted box fusion); boxes between
--ignore-threshold and --threshold become crowd (ignore) regions. Train on the result with `--data boxes:JSON`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mim_perception.training.pseudo_label import PseudoLabelConfig, pseudo_label


def _main(args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            print(f"pseudo-label: {done}/{total} frames", file=sys.stderr, flush=True)

    cfg = PseudoLabelConfig(args.threshold, args.ignore_threshold, args.fuse_iou, args.nms_iou)
    summary = pseudo_label(args.data, [Path(t) for t in args.teacher], Path(args.out), cfg, progress)
    print(json.dumps(summary, indent=1))
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="label frames with teacher detectors (COCO JSON in the stack's classes)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", action="append", required=True, metavar="BUNDLE", help="external-model bundle (repeat to fuse)")
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="frames: camvid:ROOT:SPLIT, kitti:ROOT[:A-B], video:FILE[:STRIDE]")
    p.add_argument("--out", required=True, help="COCO JSON to write")
    d = PseudoLabelConfig()
    p.add_argument("--threshold", type=float, default=d.threshold, help="fused score of a kept box")
    p.add_argument("--ignore-threshold", type=float, default=d.ignore_threshold, help="fused score of an ignore region")
    p.add_argument("--fuse-iou", type=float, default=d.fuse_iou)
    p.add_argument("--nms-iou", type=float, default=d.nms_iou)
    p.set_defaults(func=_main)
