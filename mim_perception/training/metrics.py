"""Detection mAP (COCO protocol via faster-coco-eval) and segmentation IoU (confusion matrix).

mAP is not re-implemented: per-image arrays are converted to COCO dicts and scored by ``COCOeval_faster``
(101-point interpolated AP, IoU 0.50:0.95, 100 detections per image). A class with no ground truth has AP
NaN and is left out of the mean, as COCO does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import IGNORE

Prediction = tuple[np.ndarray, np.ndarray, np.ndarray]          # boxes N×4 xyxy, scores N, labels N
GroundTruth = tuple[np.ndarray, np.ndarray] | Mapping[str, Any]  # (boxes, labels) or {"boxes", "labels"}


def _np(x: Any) -> np.ndarray:
    """numpy view of a numpy array or a (cpu/gpu) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _gt_arrays(gt: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    boxes, labels = (gt["boxes"], gt["labels"]) if isinstance(gt, Mapping) else gt
    return _np(boxes).astype(np.float64).reshape(-1, 4), _np(labels).astype(np.int64).reshape(-1)


def _ignore_regions(gt: GroundTruth, n_cls: int) -> list[tuple[np.ndarray, int]]:
    """Optional ``"ignore_boxes"`` M×4 + ``"ignore_labels"`` M (class, or -1 = every class) of a mapping gt."""
    if not isinstance(gt, Mapping) or "ignore_boxes" not in gt:
        return []
    boxes = _xywh(_np(gt["ignore_boxes"]).astype(np.float64).reshape(-1, 4))
    labels = _np(gt.get("ignore_labels", np.full(len(boxes), -1))).astype(np.int64).reshape(-1)
    return [(b, k) for b, lab in zip(boxes, labels, strict=True) for k in (range(n_cls) if lab < 0 else [int(lab)])]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    return np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])


def evaluate_detections(predictions: Sequence[Prediction], ground_truths: Sequence[GroundTruth],
                        class_names: Sequence[str], max_dets: int = 100, curves: bool = False) -> dict[str, Any]:
    """COCO box mAP of per-image predictions against per-image ground truth (same order, same length).

    A mapping ground truth may add ignore regions (``"ignore_boxes"``, ``"ignore_labels"``: class or -1 for all), scored
    as COCO crowd regions (a detection covering one by IoU >= the threshold, intersection over the detection's area,
    is not counted). Returns ``{"mAP", "AP50", "AP75", "per_class_AP", "per_class_AP50", "num_gt"}``; per-class dicts are keyed
    by class name, NaN where a class has no ground truth; the means are NaN when there is no ground truth.
    ``curves``: also ``"pr_curve50"``, per class the precision at recall 0, 0.01, ..., 1 at IoU 0.5 (NaN where
    the class has no ground truth).
    """
    from faster_coco_eval import COCO, COCOeval_faster  # noqa: PLC0415 -- faster-coco-eval (eval extra) only for COCO mAP

    if len(predictions) != len(ground_truths):
        raise ConfigError(f"evaluate_detections: {len(predictions)} predictions for {len(ground_truths)} images")
    n_cls = len(class_names)
    images: list[dict[str, Any]] = []
    gts: list[dict[str, Any]] = []
    dts: list[dict[str, Any]] = []
    for img_id, (pred, gt) in enumerate(zip(predictions, ground_truths, strict=True), start=1):
        images.append({"id": img_id})
        gb, gl = _gt_arrays(gt)
        pb, ps, pl = (_np(a) for a in pred)
        pb, ps, pl = pb.astype(np.float64).reshape(-1, 4), ps.astype(np.float64).reshape(-1), pl.astype(np.int64).reshape(-1)
        if len(pb) != len(ps) or len(pb) != len(pl):
            raise ConfigError(f"evaluate_detections: image {img_id - 1} has {len(pb)} boxes, {len(ps)} scores, {len(pl)} labels")
        for arr, name in ((gl, "ground-truth"), (pl, "predicted")):
            if len(arr) and (arr.min() < 0 or arr.max() >= n_cls):
                raise ConfigError(f"evaluate_detections: image {img_id - 1} has {name} label outside 0..{n_cls - 1}")
        for b, lab in zip(_xywh(gb), gl, strict=True):
            gts.append({"id": len(gts) + 1, "image_id": img_id, "category_id": int(lab) + 1, "bbox": b.tolist(),
                        "area": float(b[2] * b[3]), "iscrowd": 0})
        for b, lab in _ignore_regions(gt, n_cls):   # COCO crowd: detections inside are neither true nor false
            gts.append({"id": len(gts) + 1, "image_id": img_id, "category_id": lab + 1, "bbox": b.tolist(),
                        "area": float(b[2] * b[3]), "iscrowd": 1})
        for b, sc, lab in zip(_xywh(pb), ps, pl, strict=True):
            dts.append({"image_id": img_id, "category_id": int(lab) + 1, "bbox": b.tolist(), "score": float(sc)})
    quiet = lambda *a, **k: None  # noqa: E731 - faster-coco-eval logs every step otherwise
    coco_gt = COCO({"images": images, "annotations": gts,
                    "categories": [{"id": k + 1, "name": n} for k, n in enumerate(class_names)]}, print_function=quiet)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(dts), iouType="bbox", print_function=quiet)
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    # precision: [iou thresholds T, recall points R, classes K, area ranges A, max dets M]; -1 = no ground truth
    prec = np.asarray(ev.eval["precision"], np.float64)[:, :, :, 0, -1]

    def ap(p: np.ndarray) -> float:
        return float(p.mean()) if (p > -1).any() else math.nan

    def stat(x: float) -> float:
        return math.nan if x < 0 else float(x)

    counts = np.bincount(np.concatenate([_gt_arrays(g)[1] for g in ground_truths] or [np.zeros(0, np.int64)]),
                         minlength=n_cls)
    out = {
        "mAP": stat(ev.stats[0]),
        "AP50": stat(ev.stats[1]),
        "AP75": stat(ev.stats[2]),
        "per_class_AP": {n: ap(prec[:, :, k]) for k, n in enumerate(class_names)},
        "per_class_AP50": {n: ap(prec[0, :, k]) for k, n in enumerate(class_names)},
        "num_gt": {n: int(counts[k]) for k, n in enumerate(class_names)},
    }
    if curves:
        out["pr_curve50"] = {n: np.where(prec[0, :, k] > -1, prec[0, :, k], np.nan).tolist()
                             for k, n in enumerate(class_names)}
    return out


def credit_label_sets(pred: np.ndarray, target: np.ndarray, sets: np.ndarray | None, ignore: int = IGNORE) -> np.ndarray:
    """``pred`` with every pixel a dataset labels v (e.g. CamVid's road, which includes lane markings) and the model
    calls a class of v's label set (``sets[v, c]``, training/label_maps.py) counted as v; unchanged without sets."""
    if sets is None:
        return pred
    t = np.where(target == ignore, 0, target).astype(np.int64)
    return np.where(sets[t, pred] & (target != ignore), t, pred)


class SegMeter:
    """Confusion-matrix accumulator for semantic segmentation; pixels labelled ``ignore`` are not counted.

    IoU_c = TP / (TP + FP + FN). ``mIoU`` averages the classes present in the ground truth seen so far; a class
    absent from the ground truth has IoU NaN when also never predicted, else 0 (its false positives show).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore: int = IGNORE) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"SegMeter: {len(class_names)} class names for {num_classes} classes")
        self.n = num_classes
        self.names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        self.ignore = ignore
        self.confusion = np.zeros((num_classes, num_classes), np.int64)   # rows: ground truth, cols: prediction

    def reset(self) -> None:
        self.confusion[:] = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add a batch: ``pred`` and ``target`` integer label maps of the same shape (numpy or torch)."""
        p, t = _np(pred).reshape(-1).astype(np.int64), _np(target).reshape(-1).astype(np.int64)
        if p.shape != t.shape:
            raise ConfigError(f"SegMeter: prediction {_np(pred).shape} and target {_np(target).shape} differ in shape")
        valid = t != self.ignore
        p, t = p[valid], t[valid]
        if len(t) and (t.min() < 0 or t.max() >= self.n):
            raise ConfigError(f"SegMeter: target label outside 0..{self.n - 1} (and not ignore={self.ignore})")
        if len(p) and (p.min() < 0 or p.max() >= self.n):
            raise ConfigError(f"SegMeter: predicted label outside 0..{self.n - 1}")
        self.confusion += np.bincount(t * self.n + p, minlength=self.n * self.n).reshape(self.n, self.n)

    def compute(self) -> dict[str, Any]:
        """``{"mIoU", "per_class_IoU" (by name), "pixel_acc"}``; NaN when nothing has been counted."""
        c = self.confusion.astype(np.float64)
        tp = np.diag(c)
        gt, pr = c.sum(axis=1), c.sum(axis=0)
        union = gt + pr - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
        present = gt > 0
        total = c.sum()
        return {
            "mIoU": float(iou[present].mean()) if present.any() else math.nan,
            "per_class_IoU": {n: float(v) for n, v in zip(self.names, iou, strict=True)},
            "pixel_acc": float(tp.sum() / total) if total else math.nan,
        }
