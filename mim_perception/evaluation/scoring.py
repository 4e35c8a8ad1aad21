"""Numbers of one evaluation run: detection, segmentation, tracking, latency, drops, drift.

The same evaluators as the offline tools (training.metrics for COCO mAP and IoU, tools.evaluate_tracking
for TrackEval's HOTA/CLEAR/Identity), applied to what the graph published. Accuracy is computed on the frames
the graph answered (a frame it dropped has no output to score); drops are reported beside it, so a run that
processed half the frames cannot pass for a good one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from mim_perception.core.labels import LabelSpace
from mim_perception.core.tracking.simulate import MotTable
from mim_perception.evaluation.mot import score
from mim_perception.evaluation.records import STAGES, DriftPoint, FrameLog, FrameOutput, GroundTruth
from mim_perception.training.metrics import SegMeter, evaluate_detections

# Scalars a baseline comparison and a thresholds file address, as "section.key".
HEADLINE = ("frames.answered_fraction", "detection.mAP", "detection.AP50", "segmentation.mIoU", "tracking.HOTA",
            "tracking.MOTA", "tracking.IDF1", "tracking.IDSW", "latency.end_to_end_ms.p50",
            "latency.end_to_end_ms.p99", "latency.inference_ms.p50", "drops.total", "drift.alarm_fraction")


def _stats(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not len(a):
        return {"n": 0, "mean": math.nan, "p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": len(a), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99),
            "max": float(a.max())}


def mot_table(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> MotTable:
    """Per frame (ids, boxes xyxy, labels) -> MOT table with 1-based frame numbers."""
    parts = []
    for f, (ids, boxes, labels) in enumerate(frames, 1):
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        n = len(b)
        parts.append(np.column_stack([np.full(n, f), ids, b[:, :2], b[:, 2:] - b[:, :2], np.ones(n), labels,
                                      np.full(n, -1.0)]))
    a = np.concatenate(parts) if parts else np.zeros((0, 9))
    return MotTable(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6], a[:, 6], a[:, 7].astype(np.int64),
                    a[:, 8])


def detection_scores(outs: Sequence[FrameOutput], gts: Sequence[GroundTruth], labels: LabelSpace) -> dict[str, Any]:
    preds = [(o.boxes, o.scores, o.labels) for o in outs]
    return evaluate_detections(preds, [(g.boxes, g.labels) for g in gts], labels.detection, curves=True)


def segmentation_scores(segs: Sequence[np.ndarray | None], gts: Sequence[GroundTruth],
                        labels: LabelSpace) -> dict[str, Any] | None:
    """Predictions (any scale) are resized nearest to the ground truth's size, as the overlay shows them."""
    meter = SegMeter(len(labels.segmentation), labels.segmentation)
    used = 0
    for seg, g in zip(segs, gts, strict=True):
        if seg is None or g.seg is None:
            continue
        h, w = g.seg.shape
        pred = seg if seg.shape == (h, w) else cv2.resize(seg, (w, h), interpolation=cv2.INTER_NEAREST)
        # The ignore value can appear in predictions only at letterbox borders: score those pixels as "other".
        meter.update(np.where(pred < len(labels.segmentation), pred, len(labels.segmentation) - 1), g.seg)
        used += 1
    if not used:
        return None
    r = meter.compute()
    r["frames"] = used
    r["confusion"] = meter.confusion.tolist()
    return r


def tracking_scores(tracks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], gts: Sequence[GroundTruth]
                    ) -> dict[str, float] | None:

    if not gts or all((g.ids < 0).all() for g in gts if len(g.ids)):
        return None   # ground truth without track ids: identity metrics are undefined
    gt = mot_table([(g.ids, g.boxes, g.labels) for g in gts])
    return score(gt, mot_table(tracks), len(gts))


def score_run(log: FrameLog, gts: Sequence[GroundTruth] | None, outs: Sequence[FrameOutput],
              drift: Sequence[DriftPoint], labels: LabelSpace, drift_p_error: float) -> dict[str, Any]:
    n = len(outs)
    answered = [i for i, o in enumerate(outs) if o.has_detections]
    lat = [o.latency for o in outs if o.latency is not None]
    e2e = [(a - p) / 1e6 for a, p in zip(log.answer_wall_ns, log.publish_wall_ns, strict=True) if a is not None]
    last_drops = next((o.drops for o in reversed(outs) if o.drops is not None), (0, 0, 0))
    report: dict[str, Any] = {
        "frames": {"total": n, "answered": len(answered), "answered_fraction": len(answered) / n if n else math.nan,
                   "mode": log.mode, "rate": log.rate},
        "latency": {"end_to_end_ms": _stats(e2e), **{s: _stats([x[s] for x in lat]) for s in STAGES}},
        "drops": {"superseded": last_drops[0], "busy": last_drops[1], "malformed": last_drops[2],
                  "without_output": n - len(answered), "total": n - len(answered)},
        "drift": {"points": [d.__dict__ for d in drift],
                  "min_p_value": min((d.p_value for d in drift), default=math.nan),
                  "alarm_fraction": float(np.mean([d.p_value < drift_p_error for d in drift])) if drift else math.nan,
                  "max_level": max((d.level for d in drift), default=0), "p_error": drift_p_error},
        "series": {"end_to_end_ms": [((a - p) / 1e6 if a is not None else None)
                                     for a, p in zip(log.answer_wall_ns, log.publish_wall_ns, strict=True)],
                   "inference_ms": [o.latency["inference_ms"] if o.latency else None for o in outs],
                   "objects": [len(o.boxes) for o in outs]},
    }
    if gts is not None and answered:
        g = [gts[i] for i in answered]
        report["detection"] = detection_scores([outs[i] for i in answered], g, labels)
        seg = segmentation_scores([outs[i].seg for i in answered], g, labels)
        if seg is not None:
            report["segmentation"] = seg
        trk = tracking_scores([(outs[i].track_ids, outs[i].track_boxes, outs[i].track_labels) for i in answered], g)
        if trk is not None:
            report["tracking"] = trk
    report["headline"] = headline(report)
    return report


def lookup(report: dict[str, Any], key: str) -> float:
    node: Any = report
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    return float(node) if isinstance(node, int | float) else math.nan


def headline(report: dict[str, Any]) -> dict[str, float]:
    return {k: lookup(report, k) for k in HEADLINE}
