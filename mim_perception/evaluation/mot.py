"""MOTChallenge files and TrackEval scoring (HOTA / CLEAR / Identity), ROS-free: read and write ``frame,id,x,y,w,h,
conf,class,vis`` tables, drop results on ignore regions as MOTChallenge does, score a result against ground truth,
and run our tracker and the SORT baseline on simulated detections (``mim-perception evaluate-tracking``).
"""

from __future__ import annotations

import configparser
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from mim_perception.core.config import load_config
from mim_perception.core.errors import MimPerceptionError
from mim_perception.core.tracking.association import iou_matrix
from mim_perception.core.tracking.simulate import MotTable, NoiseModel, simulate_detections
from mim_perception.core.tracking.sort_baseline import SortConfig, SortTracker
from mim_perception.core.tracking.tracker import Tracker, TrackerConfig

METRICS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")


class MotFileError(MimPerceptionError, ValueError):
    """A MOTChallenge file is missing or malformed."""


def read_mot(path: str | Path, what: str = "file") -> MotTable:
    p = Path(path)
    if not p.is_file():
        raise MotFileError(f"{what} not found: {p}")
    rows: list[list[float]] = []
    for no, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.replace(" ", "").split(",")
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise MotFileError(f"{p}:{no}: not a comma-separated list of numbers: {line[:80]!r}") from None
        if len(values) < 6:
            raise MotFileError(f"{p}:{no}: expected frame,id,x,y,w,h[,conf,class,vis], got {len(values)} fields")
        values = (values + [1.0, -1.0, -1.0])[:9] if len(values) < 9 else values[:9]
        if not all(np.isfinite(values)) or values[0] < 1 or values[0] != int(values[0]) or values[1] != int(values[1]):
            raise MotFileError(f"{p}:{no}: frame must be an integer >= 1, id an integer, all values finite: {line[:80]!r}")
        if values[4] <= 0 or values[5] <= 0:
            raise MotFileError(f"{p}:{no}: box width and height must be positive: {line[:80]!r}")
        rows.append(values)
    a = np.array(rows, np.float64).reshape(-1, 9)
    return MotTable(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6].copy(), a[:, 6].copy(),
                    a[:, 7].astype(np.int64), a[:, 8].copy())


def write_mot(path: str | Path, table: MotTable) -> None:
    lines = [f"{f},{i},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},{c:.4f},{k},{v:.3f}"
             for f, i, b, c, k, v in zip(table.frames, table.ids, table.boxes, table.conf, table.classes, table.vis, strict=True)]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))


def read_seqinfo(gt_path: Path) -> dict[str, float]:
    """frameRate / seqLength / imWidth / imHeight from ``<seq>/seqinfo.ini`` (or next to the file); {} if absent."""
    for cand in (gt_path.parent.parent / "seqinfo.ini", gt_path.parent / "seqinfo.ini"):
        if cand.is_file():
            ini = configparser.ConfigParser()
            try:
                ini.read(cand)
                sec = ini["Sequence"]
                return {k: float(sec[k]) for k in ("frameRate", "seqLength", "imWidth", "imHeight") if k in sec}
            except (configparser.Error, KeyError, ValueError) as e:
                raise MotFileError(f"{cand}: malformed seqinfo.ini ({e})") from e
    return {}


def _drop_ignored(gt: MotTable, res: MotTable) -> tuple[MotTable, MotTable]:
    """Remove ignore rows (conf 0) from the ground truth and result boxes that cover them (MOTChallenge)."""
    ignore = gt.conf == 0
    if not ignore.any():
        return gt, res

    keep = np.ones(len(res), bool)
    ig = gt.select(ignore)
    for f in np.unique(ig.frames):
        gi, ri = np.nonzero(ig.frames == f)[0], np.nonzero(res.frames == f)[0]
        if len(ri) == 0:
            continue
        iou = iou_matrix(ig.xyxy()[gi], res.xyxy()[ri])
        r, c = linear_sum_assignment(-iou)
        keep[ri[c[iou[r, c] >= 0.5]]] = False
    return gt.select(~ignore), res.select(keep)


def trackeval_data(gt: MotTable, res: MotTable, num_frames: int) -> dict[str, Any]:
    """The per-sequence dict TrackEval's metrics take (ids relabelled 0..n-1, IoU similarities per frame)."""
    gt, res = _drop_ignored(gt, res)
    _, gt_ids = np.unique(gt.ids, return_inverse=True)
    _, tr_ids = np.unique(res.ids, return_inverse=True)
    gxy, rxy = gt.xyxy(), res.xyxy()
    data: dict[str, Any] = {"num_timesteps": num_frames, "gt_ids": [], "tracker_ids": [], "similarity_scores": [],
                            "num_gt_ids": len(np.unique(gt_ids)), "num_tracker_ids": len(np.unique(tr_ids)),
                            "num_gt_dets": len(gt), "num_tracker_dets": len(res)}
    for f in range(1, num_frames + 1):
        g, r = gt.frames == f, res.frames == f
        data["gt_ids"].append(gt_ids[g].astype(int))
        data["tracker_ids"].append(tr_ids[r].astype(int))
        data["similarity_scores"].append(iou_matrix(gxy[g], rxy[r]))
    return data


def score(gt: MotTable, res: MotTable, num_frames: int) -> dict[str, float]:
    import trackeval  # noqa: PLC0415 -- TrackEval (eval extra) only for HOTA

    data = trackeval_data(gt, res, num_frames)
    hota = trackeval.metrics.HOTA().eval_sequence(data)
    clear = trackeval.metrics.CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
    ident = trackeval.metrics.Identity({"PRINT_CONFIG": False}).eval_sequence(data)
    return {"HOTA": float(np.mean(hota["HOTA"])), "DetA": float(np.mean(hota["DetA"])),
            "AssA": float(np.mean(hota["AssA"])), "MOTA": float(clear["MOTA"]), "IDF1": float(ident["IDF1"]),
            "IDSW": float(clear["IDSW"])}


def run_tracker(tracker: Tracker | SortTracker, frames: list[Any]) -> tuple[MotTable, float]:
    """Run over (stamp, Detections) frames -> (confirmed tracks as a MOT table, mean ms per update)."""
    parts = []
    elapsed = 0.0
    for f, (stamp, dets) in enumerate(frames, 1):
        t0 = time.perf_counter()
        out = tracker.update(dets, stamp)
        elapsed += time.perf_counter() - t0
        c = out.confirmed()
        b = c.boxes.astype(np.float64)
        n = len(c)
        parts.append(np.column_stack([np.full(n, f), c.ids, b[:, :2], b[:, 2:] - b[:, :2], c.scores, c.labels,
                                      np.full(n, -1.0)]))
    a = np.concatenate(parts) if parts else np.zeros((0, 9))
    table = MotTable(a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6], a[:, 6], a[:, 7].astype(np.int64), a[:, 8])
    return table, elapsed / max(1, len(frames)) * 1e3


def simulate_and_compare(gt: MotTable, info: dict[str, float], params_file: str | None, seed: int | None,
                         frame_rate: float | None) -> tuple[dict[str, dict[str, float]], dict[str, MotTable]]:
    """Run the tracker and the SORT baseline on the same simulated detections -> (metrics, result tables)."""
    overrides = {"simulate.seed": seed} if seed is not None else None
    noise = load_config(NoiseModel, params_file, overrides, prefix="simulate.")
    cfg = load_config(TrackerConfig, params_file, prefix="tracker.")
    sort_cfg = load_config(SortConfig, params_file, prefix="sort_baseline.")
    rate = frame_rate or info.get("frameRate")
    if not rate or rate <= 0:
        raise MotFileError("the frame rate is unknown: give --frame-rate or put seqinfo.ini (frameRate=...) next to gt/")
    num_frames = frames_in_run(gt, info)
    size = (int(info.get("imWidth") or np.ceil((gt.boxes[:, 0] + gt.boxes[:, 2]).max(initial=1))),
            int(info.get("imHeight") or np.ceil((gt.boxes[:, 1] + gt.boxes[:, 3]).max(initial=1))))
    frames = simulate_detections(gt.select(gt.conf != 0), noise, num_frames, float(rate), size)
    metrics: dict[str, dict[str, float]] = {}
    tables: dict[str, MotTable] = {}
    for name, trk in (("tracker", Tracker(cfg)), ("sort_baseline", SortTracker(sort_cfg, cfg.kalman))):
        table, ms = run_tracker(trk, frames)
        metrics[name] = {**score(gt, table, num_frames), "ms_per_frame": ms}
        tables[name] = table
    return metrics, tables


def frames_in_run(gt: MotTable, info: dict[str, float], res: MotTable | None = None) -> int:
    last = int(max(gt.frames.max(initial=0), res.frames.max(initial=0) if res is not None else 0))
    return max(int(info.get("seqLength", 0)), last)


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    cols = [*METRICS, "ms_per_frame"]
    lines = [f"{'':<14}" + "".join(f"{c:>13}" for c in cols)]
    for name, m in metrics.items():
        cells = "".join(f"{m[c]:>13.0f}" if c == "IDSW" else
                        (f"{m[c]:>13.3f}" if c in m else f"{'-':>13}") for c in cols)
        lines.append(f"{name:<14}" + cells)
    return "\n".join(lines)
