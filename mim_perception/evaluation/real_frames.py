"""Accuracy on real frames, our model and teacher detectors side by side in one run, plus their CPU cost.

KITTI boxes (2D AP50 per class, COCO 101-point interpolation at IoU 0.5) with a KITTI-"moderate"-like filter: an
object counts when its box is >= ``min_height`` px tall, truncation <= ``max_truncation`` and occlusion <=
``max_occlusion``; other objects of an evaluated class, DontCare regions and (for pedestrians) Person_sitting are
ignore regions, and detections shorter than ``min_height`` are not counted (as KITTI's own evaluation). Van is
counted as car (``real_sources.KITTI_CLASSES``).

CamVid masks (IoU per class on the stack's label space, camera resolution): a prediction of a class the dataset
folds into the labelled one (lane_marking or crosswalk on CamVid "road") counts as that label.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.config import load_config
from mim_perception.core.errors import ModelLoadError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.pipeline import Perceiver, PerceptionConfig
from mim_perception.core.preprocess import letterbox
from mim_perception.core.timing import median_ms
from mim_perception.core.types import Detections
from mim_perception.inference.adapters import prepare
from mim_perception.inference.backends import BackendConfig, load_backend
from mim_perception.inference.external import open_external
from mim_perception.inference.manifest import load_manifest
from mim_perception.training.metrics import SegMeter, credit_label_sets, evaluate_detections
from mim_perception.training.real_sources import KITTI_CLASSES, CamVidSource, KittiSource

EVAL_CLASSES = ("car", "pedestrian", "cyclist")                              # KITTI's evaluated classes
MIOU_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "vehicle", "person")
KITTI_NEIGHBOURS = {"Person_sitting": "pedestrian"}                          # ignored, not missed, for that class


@dataclass(frozen=True)
class KittiFilter:
    min_height: float = 25.0
    max_truncation: float = 0.5
    max_occlusion: int = 1


def kitti_ground_truth(source: KittiSource, i: int, labels: LabelSpace, f: KittiFilter) -> dict[str, np.ndarray]:
    """Counted boxes/labels and ignore regions (label -1: every class) of KITTI item ``i``."""
    boxes: list[list[float]] = []
    ign: list[list[float]] = []
    classes: list[int] = []
    ign_cls: list[int] = []
    for r in source.rows(i):
        box, t = r["box"], r["type"]
        name = KITTI_NEIGHBOURS.get(t) if t in KITTI_NEIGHBOURS else KITTI_CLASSES.get(t)
        if t in KITTI_NEIGHBOURS and name is not None:
            ign.append(box)
            ign_cls.append(labels.det_index(name))
        elif name is not None and name in EVAL_CLASSES:
            moderate = (box[3] - box[1] >= f.min_height and r["truncated"] <= f.max_truncation
                        and r["occluded"] <= f.max_occlusion)
            (boxes if moderate else ign).append(box)
            (classes if moderate else ign_cls).append(labels.det_index(name))
        elif t == "DontCare":
            ign.append(box)
            ign_cls.append(-1)
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(classes, np.int64),
            "ignore_boxes": np.asarray(ign, np.float32).reshape(-1, 4), "ignore_labels": np.asarray(ign_cls, np.int64)}


def score_kitti(detect: Callable[[np.ndarray], Detections], source: KittiSource, labels: LabelSpace,
                f: KittiFilter = KittiFilter()) -> dict[str, Any]:
    """AP50 per evaluated class of ``detect`` (camera frame -> detections, low threshold) over ``source``."""
    preds, gts = [], []
    for i in range(len(source)):
        d = detect(source[i].image)
        tall = (d.boxes[:, 3] - d.boxes[:, 1]) >= f.min_height
        preds.append((d.boxes[tall], d.scores[tall], d.labels[tall]))
        gts.append(kitti_ground_truth(source, i, labels, f))
    m = evaluate_detections(preds, gts, labels.detection)
    return {"AP50": {c: m["per_class_AP50"][c] for c in EVAL_CLASSES}, "num_gt": {c: m["num_gt"][c] for c in EVAL_CLASSES},
            "frames": len(source), "split": source.name, "filter": f.__dict__}


def score_camvid(segment: Callable[[np.ndarray], np.ndarray], source: CamVidSource, labels: LabelSpace) -> dict[str, Any]:
    """IoU per class of ``segment`` (camera frame -> label mask at camera resolution) over ``source``."""
    meter = SegMeter(len(labels.segmentation), labels.segmentation)
    sets = source.map.sets
    for i in range(len(source)):
        s = source[i]
        meter.update(credit_label_sets(segment(s.image).astype(np.int64), s.seg, sets), s.seg)
    iou = meter.compute()["per_class_IoU"]
    return {"IoU": {c: iou[c] for c in MIOU_CLASSES}, "mIoU": float(np.nanmean([iou[c] for c in MIOU_CLASSES])),
            "frames": len(source), "split": source.name}


@dataclass
class Contender:
    """One bundle under evaluation: its detector, optional segmenter, and its model-only forward for timing."""

    name: str
    kind: str                                          # "ours" | "external"
    detect: Callable[[np.ndarray], Detections]
    segment: Callable[[np.ndarray], np.ndarray] | None
    forward: Callable[[np.ndarray], Any]               # one model call on a prepared camera frame
    input_hw: tuple[int, int]


def open_contender(bundle: str, threads: int, score_threshold: float = 0.01) -> Contender:
    """A model bundle (ours: det + seg through the node's Perceiver; external: its adapter) ready to score."""
    m = load_manifest(Path(bundle), roles=("onnx",))
    if m.external:
        det, _ = open_external(Path(bundle), threads)
        def fwd_ext(image: np.ndarray) -> Any:
            return det.session.run(det.output_names, {det.input_name: prepare(image, det.contract)[0]})

        return Contender(m.name, "external", lambda im: det.detect(im, score_threshold, 0.6, 100), None, fwd_ext,
                         (m.input_height, m.input_width))
    cfg = load_config(BackendConfig, None, {"backend.model": bundle, "backend.kind": "onnxruntime",
                                            "backend.intra_op_threads": threads}, prefix="backend.")
    backend, _, _ = load_backend(cfg)
    pcfg = load_config(PerceptionConfig, None, {"perception.score_threshold": score_threshold,
                                                "perception.seg_full_resolution": True}, prefix="perception.")
    perceiver = Perceiver(backend, pcfg)

    def fwd_ours(image: np.ndarray) -> Any:
        return backend.infer(letterbox(image, backend.input_hw)[0].transpose(2, 0, 1)[None].copy())

    def segment(image: np.ndarray) -> np.ndarray:
        seg = perceiver.process(image, 0.0).seg
        if seg is None:
            raise ModelLoadError(f"{bundle} has no segmentation output")
        return seg

    return Contender(m.name, "ours", lambda im: perceiver.process(im, 0.0).detections,
                     segment if m.segmentation_classes else None, fwd_ours, backend.input_hw)


def evaluate_real(bundles: list[str], kitti: KittiSource | None, camvid: CamVidSource | None, *, threads: int = 2,
                  timing_frame: np.ndarray | None = None) -> dict[str, Any]:
    """Every bundle on the same frames in one process: KITTI AP50, CamVid IoU (bundles with segmentation) and the
    median model-only forward time (ONNX Runtime, ``threads`` threads) on one real frame, interleaved per round so
    a busy machine slows every contender alike."""
    labels = LabelSpace.load()
    contenders = [open_contender(b, threads) for b in bundles]
    out: dict[str, Any] = {"threads": threads, "models": {}}
    for c in contenders:
        r: dict[str, Any] = {"kind": c.kind, "input_hw": list(c.input_hw)}
        if kitti is not None:
            r["kitti"] = score_kitti(c.detect, kitti, labels)
        if camvid is not None and c.segment is not None:
            r["camvid"] = score_camvid(c.segment, camvid, labels)
        out["models"][c.name] = r
    if timing_frame is not None:
        rounds: dict[str, list[float]] = {c.name: [] for c in contenders}
        frame = timing_frame
        for _ in range(5):
            for c in contenders:
                fwd = c.forward
                rounds[c.name].append(median_ms(lambda fwd=fwd: fwd(frame), runs=12, warmup=3))   # type: ignore[misc]
        for c in contenders:
            out["models"][c.name]["forward_ms"] = float(np.median(rounds[c.name]))
    return out


def _fmt(v: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if v is None or math.isnan(v) else fmt.format(v)


def real_frames_markdown(doc: dict[str, Any]) -> str:
    """Our bundle and the teachers on held-back real frames (``evaluate-real --json``), forward cost vs YOLOX-nano."""
    models = doc["models"]
    ref = next((r.get("forward_ms") for n, r in models.items() if n.startswith("yolox_nano") and r["kind"] == "external"),
               None)
    rows = ["| model | kind | input | KITTI car AP50 | pedestrian AP50 | cyclist AP50 | CamVid mIoU (7 classes) | "
            "forward ms | × YOLOX-nano |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in models.items():
        k = r.get("kitti", {}).get("AP50", {})
        fwd = r.get("forward_ms")
        rows.append(f"| {name} | {r['kind']} | {r['input_hw'][0]}×{r['input_hw'][1]} | {_fmt(k.get('car'))} | "
                    f"{_fmt(k.get('pedestrian'))} | {_fmt(k.get('cyclist'))} | {_fmt(r.get('camvid', {}).get('mIoU'))} | "
                    f"{_fmt(fwd, '{:.1f}')} | {_fmt(fwd / ref if fwd and ref else None, '{:.2f}')} |")
    any_k = next((r["kitti"] for r in models.values() if "kitti" in r), None)
    if any_k is not None:
        rows.append("")
        rows.append(f"KITTI {any_k['split']} ({any_k['frames']} frames; moderate-like filter: box ≥ "
                    f"{any_k['filter']['min_height']:g} px tall, truncation ≤ {any_k['filter']['max_truncation']:g}, "
                    f"occlusion ≤ {any_k['filter']['max_occlusion']}; ground truth car {any_k['num_gt']['car']}, "
                    f"pedestrian {any_k['num_gt']['pedestrian']}, cyclist {any_k['num_gt']['cyclist']}); forward: model "
                    f"only, ONNX Runtime {doc['threads']} threads, interleaved in one process.")
    return "\n".join(rows) + f"\n\n`{doc.get('command', '?')}`\n"
