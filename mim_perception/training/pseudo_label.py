"""Pseudo-labels: teacher detectors (external-model bundles) run over any frame source -> COCO JSON in the stack's
classes, readable back as a training source (``boxes:JSON``).

Two teachers are fused box by box (weighted box fusion: same class, IoU >= ``fuse_iou``, one box per teacher per
cluster; score-weighted mean box; score = sum of scores / number of teachers, so a box only one teacher sees counts
half). Fused boxes scoring >= ``threshold`` become annotations; those between ``ignore_threshold`` and
``threshold`` become crowd (ignore) regions, so an uncertain object is neither taught as an object nor as
background.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.tracking.association import iou_matrix
from mim_perception.core.types import Detections
from mim_perception.inference.external import ExternalDetector, open_external
from mim_perception.training.common import open_source


@dataclass(frozen=True)
class PseudoLabelConfig:
    threshold: float = 0.4          # fused score of a kept box
    ignore_threshold: float = 0.2   # fused score above which a box is at least an ignore region
    fuse_iou: float = 0.55
    nms_iou: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 <= self.ignore_threshold <= self.threshold <= 1.0:
            raise ConfigError(f"pseudo-label thresholds must satisfy 0 <= ignore ({self.ignore_threshold}) <= "
                              f"threshold ({self.threshold}) <= 1")


def fuse(per_teacher: Sequence[Detections], iou: float) -> Detections:
    """Weighted box fusion of several detectors' detections of one frame (module docstring)."""
    n = len(per_teacher)
    if n == 1:
        return per_teacher[0]
    boxes = np.concatenate([d.boxes for d in per_teacher]).astype(np.float64)
    scores = np.concatenate([d.scores for d in per_teacher]).astype(np.float64)
    labels = np.concatenate([d.labels for d in per_teacher])
    teacher = np.concatenate([np.full(len(d), k) for k, d in enumerate(per_teacher)])
    clusters: list[list[int]] = []
    fused: list[np.ndarray] = []
    for i in np.argsort(-scores, kind="stable"):
        best, best_iou = -1, iou
        for c, members in enumerate(clusters):
            if labels[members[0]] != labels[i] or teacher[i] in teacher[members]:
                continue
            o = float(iou_matrix(boxes[i:i + 1], fused[c][None])[0, 0])
            if o >= best_iou:
                best, best_iou = c, o
        if best < 0:
            clusters.append([i])
            fused.append(boxes[i].copy())
        else:
            clusters[best].append(i)
            m = clusters[best]
            fused[best] = (boxes[m] * scores[m, None]).sum(0) / scores[m].sum()
    return Detections.create(np.array(fused).reshape(-1, 4), [scores[m].sum() / n for m in clusters],
                             [labels[m[0]] for m in clusters])


def label_frames(source: Any, teachers: Sequence[ExternalDetector], cfg: PseudoLabelConfig,
                 progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """-> (COCO images, COCO annotations) for every item of ``source`` (file_name = the item's key)."""
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    for i in range(len(source)):
        image = source[i].image
        dets = fuse([t.detect(image, cfg.ignore_threshold, cfg.nms_iou, 300) for t in teachers], cfg.fuse_iou)
        dets = dets.select(dets.scores >= cfg.ignore_threshold)   # a box one teacher of two saw weakly: nothing
        h, w = image.shape[:2]
        images.append({"id": i + 1, "file_name": source.keys[i], "width": w, "height": h})
        for b, s, c in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "score": round(s, 4),
                         "bbox": [round(b[0], 2), round(b[1], 2), round(b[2] - b[0], 2), round(b[3] - b[1], 2)],
                         "area": round((b[2] - b[0]) * (b[3] - b[1]), 1), "iscrowd": int(s < cfg.threshold)})
        if progress is not None:
            progress(i + 1, len(source))
    return images, anns


def pseudo_label(spec: str, teacher_bundles: Sequence[Path], out: Path, cfg: PseudoLabelConfig,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Label every frame of data spec ``spec`` with the teachers; write the COCO JSON ``out``; -> summary."""

    if not teacher_bundles:
        raise ConfigError("pseudo-label needs at least one --teacher bundle")
    opened = [open_external(Path(b)) for b in teacher_bundles]
    teachers = [d for d, _ in opened]
    if len({d.targets for d in teachers}) != 1:
        raise ConfigError("teachers must map into the same class space (import them with the same --class-map)")
    source = open_source(spec, cache_dir=Path("build/data_cache"), labelled=False)
    if not hasattr(source, "keys"):
        raise ConfigError(f"{spec}: pseudo-labels need a source with item keys (camvid:, kitti:, video:)")
    t0 = time.perf_counter()
    images, anns = label_frames(source, teachers, cfg, progress)
    produced = sorted({t for d in teachers for t in d.class_map.produces})
    space = LabelSpace.load()
    doc = {"info": {"source": spec, "description": "mim-perception pseudo-label",
                    "teachers": [{"bundle": str(b), "name": m.name, "sha256": m.sha256[m.files["onnx"]]}
                                 for b, (_, m) in zip(teacher_bundles, opened, strict=True)],
                    "config": cfg.__dict__, "iscrowd": "fused score between ignore_threshold and threshold"},
           "images": images, "annotations": anns,
           "categories": [{"id": space.det_index(c) + 1, "name": c} for c in produced]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))
    kept = [a for a in anns if not a["iscrowd"]]
    return {"frames": len(images), "boxes": len(kept), "ignore_regions": len(anns) - len(kept),
            "per_class": {c: sum(1 for a in kept if a["category_id"] == space.det_index(c) + 1) for c in produced},
            "seconds": round(time.perf_counter() - t0, 1), "out": str(out)}
