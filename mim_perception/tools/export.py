"""`mim-perception export`: checkpoint -> verified model bundle (ONNX fp32 + int8, torch weights, references, manifest).

    mim-perception export --checkpoint runs/ft/best.pt --mim runs/pre/mim.pt --data DIR --out models/NAME

1. ONNX (opset 18, dynamo exporter, static B=1 uint8 BGR input) of ``export_forward``; ``onnx.checker``.
2. Parity: ONNX Runtime vs torch on real frames (max abs diff of scores/boxes/embeddings, seg agreement).
3. int8: ORT static QDQ quantisation calibrated on frames; its speed-up and accuracy drop are recorded.
4. Drift reference (pooled embeddings of validation frames) and, with ``--mim``, the OOD scorer (MIM decoder
   with a fixed mask pattern, exported to ONNX, int8 unless --no-int8) and its reference errors.
5. manifest.json with the sha256 of every file, labels, input contract, parity, metrics and the training record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mim_perception.core.errors import ConfigError
from mim_perception.training.export import attach_ood, export_bundle, recalibrate_drift, recalibrate_drift_from_replay


def _main(args: argparse.Namespace) -> int:
    if not args.data and not (args.recalibrate_drift and args.drift_replay):
        raise ConfigError("--data is required (except for --recalibrate-drift --drift-replay)")
    if args.recalibrate_drift:
        m = recalibrate_drift_from_replay(Path(args.out), Path(args.drift_replay)) if args.drift_replay else \
            recalibrate_drift(Path(args.out), args.data, frames=args.frames, cache_dir=Path(args.cache_dir))
        print(f"export: drift reference of {args.out} rebuilt ({m.training['drift_reference']}); manifest re-signed")
        return 0
    if args.attach_ood:
        if not args.mim:
            raise ConfigError("--attach-ood needs --mim (the pretraining checkpoint of the bundle's backbone)")
        m = attach_ood(Path(args.out), Path(args.mim), args.data, frames=args.frames, cache_dir=Path(args.cache_dir),
                       int8=not args.no_int8)
        print(f"export: OOD scorer attached to {args.out} ({m.metrics.get('ood_precision')}); manifest re-signed")
        return 0
    if not args.checkpoint:
        raise ConfigError("--checkpoint is required (unless --recalibrate-drift or --attach-ood)")
    m = export_bundle(Path(args.checkpoint), Path(args.out), args.data, mim=Path(args.mim) if args.mim else None,
                      name=args.name or Path(args.out).name, frames=args.frames, cache_dir=Path(args.cache_dir),
                      int8=not args.no_int8, input_hw=(args.height, args.width) if args.height else None,
                      seg_untrained=tuple(args.seg_untrained or ()))
    print(json.dumps({"files": m.files, "parity": m.parity, "metrics": {k: v for k, v in m.metrics.items() if k != "validation"}},
                     indent=1))
    print(f"export: bundle {args.out} verified (sha256 of {len(m.sha256)} files)")
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="export a fine-tuned checkpoint to a verified ONNX model bundle", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="OUT/best.pt of `finetune`")
    p.add_argument("--recalibrate-drift", action="store_true",
                   help="only rebuild the drift reference of the existing bundle --out from --data (clean drives)")
    p.add_argument("--attach-ood", action="store_true",
                   help="only add the OOD scorer (--mim) to the existing bundle --out, references from --data")
    p.add_argument("--mim", help="OUT/mim.pt of `pretrain`: adds the OOD scorer")
    p.add_argument("--drift-replay", metavar="NPZ",
                   help="with --recalibrate-drift: node-sampled embeddings of clean drives (bench/drift_replay.py)")
    p.add_argument("--data", action="append", metavar="SPEC", help="frames for parity/calibration/references")
    p.add_argument("--out", required=True, help="bundle directory")
    p.add_argument("--name", help="model name (default: the bundle directory's name)")
    p.add_argument("--frames", type=int, default=320, help="frames used for calibration and references")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 model (and keep the OOD scorer in fp32)")
    p.add_argument("--seg-untrained", action="append", metavar="CLASS",
                   help="segmentation class no training label showed (repeat): left out of the exported argmax")
    p.add_argument("--height", type=int, help="exported input height (default: the training size)")
    p.add_argument("--width", type=int, help="exported input width (default: the training size)")
    p.add_argument("--cache-dir", default="build/data_cache")
    p.set_defaults(func=_main)
