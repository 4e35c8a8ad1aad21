"""`mim-perception evaluate-robustness`: accuracy and monitoring signals under corruptions.

    mim-perception evaluate-robustness --data synthetic:12:40:9000:640x384 [--model models/NAME] --out report/

For clean frames and each corruption at severities 1, 3, 5 (training/corruptions.py): detection AP50, segmentation
mIoU, the drift monitor's p-values over windows of consecutive frames and the MIM OOD score; then the AUROC of
separating corrupted from clean (per window for drift, per frame and per window for OOD) and the false-alarm
rate of the drift alarm on clean windows. Writes robustness.json, robustness.md and robustness.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mim_perception.evaluation.robustness import evaluate
from mim_perception.inference.backends import default_model_dir
from mim_perception.training import corruptions


def _main(args: argparse.Namespace) -> int:
    bundle = Path(args.model) if args.model else default_model_dir()
    names = tuple(args.corruptions.split(",")) if args.corruptions else corruptions.NAMES
    evaluate(args.data, bundle, Path(args.out), max_frames=args.frames, names=names, cache_dir=Path(args.cache_dir),
             int8=args.int8)
    print(f"evaluate-robustness: wrote {args.out}/robustness.md, .json, .png")
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="accuracy, drift and OOD scores under corruptions", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, metavar="SPEC", help="held-out labelled data (see finetune)")
    p.add_argument("--model", help="model bundle (default: the shipped one)")
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=240, help="consecutive frames per condition")
    p.add_argument("--corruptions", help=f"comma-separated subset of {','.join(corruptions.NAMES)}")
    p.add_argument("--int8", action="store_true", help="evaluate the bundle's statically quantised ONNX model")
    p.add_argument("--cache-dir", default="build/data_cache")
    p.set_defaults(func=_main)
