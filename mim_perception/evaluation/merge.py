"""One report over several evaluated bags: every frame of every run scored together, not an average of averages.

Runs are concatenated in the given order; track ids (ground truth and result) are offset per run so no identity
can carry over from one drive to the next, which makes TrackEval's numbers over the concatenation those of the
runs combined. Each run's own headline is kept under ``runs``; failed bags are listed under ``failed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mim_perception.core.config import load_config
from mim_perception.core.labels import LabelSpace
from mim_perception.core.monitoring.health import MonitorConfig
from mim_perception.evaluation import report as rep
from mim_perception.evaluation.records import DriftPoint, FrameLog, FrameOutput, GroundTruth, Run, load_run
from mim_perception.evaluation.scoring import score_run

ID_STRIDE = 1_000_000_000


def concatenate(runs: Sequence[Run]) -> Run:
    first = runs[0][0]
    log = FrameLog(first.image_topic, [], [], [], [], first.mode, first.rate)
    gts: list[GroundTruth] | None = [] if all(r[1] is not None for r in runs) else None
    outs: list[FrameOutput] = []
    drift: list[DriftPoint] = []
    for k, (lg, g, o, d) in enumerate(runs):
        offset = len(outs)
        log.orig_stamps_ns += lg.orig_stamps_ns
        log.stamps_ns += lg.stamps_ns
        log.publish_wall_ns += lg.publish_wall_ns
        log.answer_wall_ns += lg.answer_wall_ns
        if gts is not None and g is not None:
            for truth in g:
                truth.ids = truth.ids + k * ID_STRIDE
            gts += g
        for frame in o:
            frame.track_ids = frame.track_ids + k * ID_STRIDE
        outs += o
        drift += [DriftPoint(p.frame + offset, p.p_value, p.score, p.level) for p in d]
    return log, gts, outs, drift


def merge_runs(runs: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]], out: Path, camera: str, *,
               gt_dir: Path | None = None, gt_topic: str | None = None, baseline: Path | None = None,
               thresholds: Path | None = None
               ) -> dict[str, Any]:
    """Score ``runs`` (results of tools.evaluate.evaluate_one) as one, write OUT/report.json and report.html."""

    out.mkdir(parents=True, exist_ok=True)
    labels = LabelSpace.load()
    monitor = load_config(MonitorConfig, None, prefix="monitor.")
    ordered = sorted(runs, key=lambda r: r["out"])   # the order tasks finished in must not change the numbers
    if ordered:
        log, gts, outs, drift = concatenate([
            load_run(Path(r["bag"]), Path(r["out"]), FrameLog.load(Path(r["out"]) / "frames.json"), camera, labels,
                     gt_dir=gt_dir, gt_topic=gt_topic) for r in ordered])
        report = score_run(log, gts, outs, drift, labels, monitor.drift_p_error)
    else:
        report = {"frames": {"total": 0, "answered": 0, "mode": "-"}, "headline": {}, "latency": {}, "drops": {},
                  "drift": {"points": []}, "series": {"end_to_end_ms": [], "inference_ms": [], "objects": []}}
    report["bag"] = ", ".join(r["bag"] for r in ordered)
    report["runs"] = [{"bag": r["bag"], "out": r["out"], "frames": r["frames"], "headline": r["headline"]}
                      for r in ordered]
    report["failed"] = list(failed)
    if baseline is not None:
        report["baseline"] = rep.baseline_diff(report, rep.load_report(baseline))
    if thresholds is not None:
        report["violations"] = rep.check_thresholds(report, rep.load_thresholds(thresholds))
    rep.write_json(out / "report.json", report)
    if ordered:
        rep.write_html(out / "report.html", report)
    return report
