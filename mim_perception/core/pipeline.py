"""Perceiver: the whole per-frame computation, callable without ROS (the perception node is a thin shell).

image (camera pixels, BGR uint8) -> letterbox -> backend.infer -> threshold + NMS -> camera pixels
-> segmentation cropped to the camera's view -> tracker -> drift (every Nth frame) and the MIM OOD score (every Mth
frame, on a background thread). Each stage is timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from mim_perception.core.config import rng
from mim_perception.core.errors import BadImageError
from mim_perception.core.monitoring.drift import DriftDetector, DriftResult
from mim_perception.core.monitoring.image_stats import image_statistics
from mim_perception.core.monitoring.ood import OodMonitor
from mim_perception.core.postprocess import seg_to_camera, select_detections, to_camera
from mim_perception.core.preprocess import Geometry, letterbox
from mim_perception.core.types import Detections


@dataclass
class ModelOutputs:
    """Fixed-size outputs of one batch (what exported graphs return). External detectors have no ``seg``/``embed``."""

    boxes: np.ndarray              # B×K×4 xyxy, model input pixels
    scores: np.ndarray             # B×K
    classes: np.ndarray            # B×K int
    seg: np.ndarray | None         # B×h×w class ids at model resolution / seg_stride
    embed: np.ndarray | None       # B×D pooled backbone features


class Backend(Protocol):
    name: str
    input_hw: tuple[int, int]
    seg_stride: int

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        """``batch`` B×3×H×W at ``input_hw``: uint8 BGR, or what the backend's own ``prepare`` returns.

        Optional, for backends with their own input contract (external detectors): ``prepare(image) -> (3×H×W model
        input, Geometry)`` replaces the letterbox, and ``needs_nms = False`` marks set-prediction outputs."""
        ...


class FrameTracker(Protocol):
    def update(self, detections: Detections, stamp: float) -> Any: ...


@dataclass(frozen=True)
class PerceptionConfig:
    PARAM_FILE: ClassVar[str] = "perception.param.yaml"
    score_threshold: float = field(metadata=rng(0.0, 1.0))
    track_score_threshold: float = field(metadata=rng(0.0, 1.0))
    nms_iou: float = field(metadata=rng(0.0, 1.0))
    max_detections: int = field(metadata=rng(1, 10000))
    seg_full_resolution: bool
    drift_every: int = field(metadata=rng(1, 10000, unit="frames"))
    ood_every: int = field(metadata=rng(0, 10000, unit="frames"))   # 0 = OOD scoring off


@dataclass
class PerceptionResult:
    detections: Detections          # camera pixels, score >= score_threshold (what is published)
    seg: np.ndarray | None          # uint8 label map (camera resolution or model scale); None without a seg output
    embed: np.ndarray               # D
    timings_ms: dict[str, float]
    tracks: Any = None
    drift: DriftResult | None = None
    invalid_outputs: int = 0        # non-finite candidates removed
    ood: float = float("nan")       # latest MIM reconstruction OOD score (NaN: none yet or no OOD model)
    # seg is None and embed empty for models without those outputs (external detectors)


class Perceiver:
    def __init__(self, backend: Backend, cfg: PerceptionConfig, tracker: FrameTracker | None = None,
                 drift: DriftDetector | None = None, ood: OodMonitor | None = None) -> None:
        self.backend, self.cfg, self.tracker, self.drift, self.ood = backend, cfg, tracker, drift, ood

    def process(self, image: np.ndarray, stamp: float) -> PerceptionResult:
        """One camera frame through the model and this camera's tracker, drift window and OOD monitor. A Perceiver
        holds one camera's state; cameras sharing a model each have their own Perceiver (no batching of cameras:
        on the CPU it buys nothing, and a GPU batch would have to keep per-camera state apart)."""
        t0 = time.perf_counter()
        im = image
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8 or min(im.shape[:2]) < 1:
            raise BadImageError(f"perceiver needs H×W×3 uint8 BGR frames, got {im.dtype} {im.shape}")
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            chw, geom = prepare(im)
        else:
            lb, scale, px, py = letterbox(im, self.backend.input_hw)
            chw, geom = lb.transpose(2, 0, 1), Geometry(scale, scale, px, py)
        hw = im.shape[:2]
        x = np.ascontiguousarray(chw[None])
        t1 = time.perf_counter()
        out = self.backend.infer(x)
        t2 = time.perf_counter()
        finite = np.isfinite(out.boxes[0]).all(1) & np.isfinite(out.scores[0])
        # The tracker also sees low-score boxes (ByteTrack's second stage rescues tracks with them).
        floor = min(self.cfg.score_threshold, self.cfg.track_score_threshold) if self.tracker else self.cfg.score_threshold
        # set-prediction models (needs_nms False) are final: IoU > 1 never suppresses
        nms_iou = self.cfg.nms_iou if getattr(self.backend, "needs_nms", True) else 1.0
        candidates = select_detections(out.boxes[0], out.scores[0], out.classes[0], score_threshold=floor,
                                       nms_iou=nms_iou, max_detections=self.cfg.max_detections)
        candidates = to_camera(candidates, geom, hw)
        dets = candidates.select(candidates.scores >= self.cfg.score_threshold)
        seg = None if out.seg is None else seg_to_camera(out.seg[0], self.backend.seg_stride, geom.sx, geom.px, geom.py,
                                                         hw, self.cfg.seg_full_resolution)
        embed = out.embed[0] if out.embed is not None else np.zeros(0, np.float32)
        t3 = time.perf_counter()
        tracks = self.tracker.update(candidates, stamp) if self.tracker is not None else None
        t4 = time.perf_counter()
        drift = None
        if self.drift is not None:   # the detector samples every Nth frame
            stats = image_statistics(im) if self.drift.image_ref is not None and self.drift.wants() else None
            if self.drift.add(embed if out.embed is not None else None, stats):
                drift = self.drift.result()
        ood = float("nan")
        if self.ood is not None:
            self.ood.offer(x)
            ood = self.ood.latest()
        t5 = time.perf_counter()
        return PerceptionResult(
            dets, seg, embed,
            {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3,
             "tracking": (t4 - t3) * 1e3, "monitoring": (t5 - t4) * 1e3},
            tracks, drift, int((~finite).sum()), ood)
