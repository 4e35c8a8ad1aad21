"""`mim-perception import-model`: an external ONNX detector -> a verified model bundle the whole stack can run.

    mim-perception import-model yolox_nano.onnx --adapter yolox --classes coco \\
        --class-map config/class_maps/coco_to_driving.yaml --out models/yolox_nano_coco

Adapters: yolox, ultralytics (YOLOv8/YOLO11), nanodet, rtdetr (docs/external_models.md). The adapter must match the
model's outputs, the input its shape, the class map its classes; any mismatch fails here with the reason.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mim_perception.inference.adapters import ADAPTERS, InputContract, get_adapter
from mim_perception.inference.external import import_model


def _main(args: argparse.Namespace) -> int:

    contract = None
    if args.height or args.width:
        if not (args.height and args.width):
            raise SystemExit("import-model: give both --height and --width")
        contract = get_adapter(args.adapter).default_contract(args.height, args.width)
    if args.contract:
        base = contract.to_dict() if contract else {}
        contract = InputContract.from_dict(base | json.loads(args.contract))
    m = import_model(Path(args.model), Path(args.out), args.adapter, classes=args.classes,
                     class_map=Path(args.class_map) if args.class_map else None, name=args.name or "", contract=contract,
                     image_reference=Path(args.image_reference) if args.image_reference else None)
    print(json.dumps({"bundle": args.out, "adapter": m.adapter, "input": m.input_contract,
                      "classes": m.detection_classes, "sha256": m.sha256}, indent=1))
    return 0


def register(sub: argparse._SubParsersAction, verb: str) -> None:
    p = sub.add_parser(verb, help="import an external ONNX detector (YOLOX, YOLOv8/11, NanoDet, RT-DETR) as a bundle",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the ONNX file")
    p.add_argument("--adapter", required=True, choices=sorted(ADAPTERS))
    p.add_argument("--classes", required=True, help="class names in output order: 'coco' or a YAML with names: [...]")
    p.add_argument("--class-map", help="YAML map onto the stack's classes (e.g. config/class_maps/coco_to_driving.yaml); "
                                       "default: the model's own class names")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--name", help="bundle name (default: the directory name)")
    p.add_argument("--height", type=int, help="input height (models with a dynamic input size)")
    p.add_argument("--width", type=int, help="input width")
    p.add_argument("--image-reference", metavar="NPZ",
                   help="drift reference of image statistics (e.g. a shipped bundle's image_reference.npz): the node's "
                        "drift monitor then runs on image statistics; without it drift monitoring is off")
    p.add_argument("--contract", help='JSON overrides of the adapter\'s input contract, e.g. \'{"placement": "centre"}\'')
    p.set_defaults(func=_main)
