"""Training transforms on Samples (numpy/cv2, deterministic given a numpy Generator) and the letterbox.

Geometry is one affine map per sample (scale s, translation t) applied to the image (bilinear), the label
mask (nearest, border = ignore) and the boxes (x' = s·x + t), so boxes and mask stay aligned by
construction. Box coordinates use the pixel-edge convention (pixel i spans [i, i+1)); cv2 warps use pixel
centres, hence the half-pixel terms.

``letterbox``/``letterbox_params``/``unletterbox_boxes`` are pure functions shared with inference: the
perception node letterboxes camera frames the same way and maps boxes back with ``unletterbox_boxes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import cv2
import numpy as np

from mim_perception.core.config import rng as prange
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import IGNORE
from mim_perception.core.preprocess import PAD_VALUE, letterbox, letterbox_boxes, letterbox_params
from mim_perception.training import corruptions
from mim_perception.training.data import Sample, Transform

# ------------------------------------------------------------------------------------------ geometry


def _warp(sample: Sample, s: float, t: tuple[float, float], size_hw: tuple[int, int], *, min_size: float,
          min_visible: float) -> Sample:
    """Apply x' = s·x + t to image, mask and boxes into a ``size_hw`` canvas; drop boxes cut too much."""
    dh, dw = size_hw
    h, w = sample.image.shape[:2]
    tx, ty = t
    # Pixel centres: c' + 0.5 = s·(c + 0.5) + t  =>  c' = s·c + t + 0.5·(s − 1).
    m = np.array([[s, 0.0, tx + 0.5 * (s - 1)], [0.0, s, ty + 0.5 * (s - 1)]], np.float64)
    if s < 0.75:   # shrinking: pre-filter with INTER_AREA so the warp does not alias
        small = cv2.resize(sample.image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        ms = np.array([[s / sx, 0.0, tx + 0.5 * (s / sx - 1)], [0.0, s / sy, ty + 0.5 * (s / sy - 1)]], np.float64)
        image = cv2.warpAffine(small, ms, (dw, dh), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    else:
        image = cv2.warpAffine(sample.image, m, (dw, dh), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    seg = cv2.warpAffine(sample.seg, m, (dw, dh), flags=cv2.INTER_NEAREST, borderValue=IGNORE)
    boxes = sample.boxes * np.float32(s) + np.array([tx, ty, tx, ty], np.float32)
    boxes, labels = clip_boxes(boxes, sample.labels, size_hw, min_size, min_visible)
    ignore = _ignore_regions(sample, lambda b: b * np.float32(s) + np.array([tx, ty, tx, ty], np.float32), size_hw)
    return replace(sample, image=image, seg=seg, boxes=boxes, labels=labels, ignore_boxes=ignore)


def _ignore_regions(sample: Sample, move: Callable[[np.ndarray], np.ndarray], size_hw: tuple[int, int]
                    ) -> np.ndarray | None:
    """The sample's ignore regions moved like its boxes and clipped (any part left inside still counts)."""
    if sample.ignore_boxes is None:
        return None
    b = np.clip(move(sample.ignore_boxes), 0, np.array([size_hw[1], size_hw[0]] * 2, np.float32))
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])]


def clip_boxes(boxes: np.ndarray, labels: np.ndarray, size_hw: tuple[int, int], min_size: float,
               min_visible: float) -> tuple[np.ndarray, np.ndarray]:
    """Clip to the image; drop boxes with a side < ``min_size`` px or < ``min_visible`` of their area left."""
    dh, dw = size_hw
    clipped = np.clip(boxes, 0, np.array([dw, dh, dw, dh], np.float32))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (cw >= max(min_size, 1e-3)) & (ch >= max(min_size, 1e-3)) & (cw * ch >= min_visible * area)
    return clipped[keep], labels[keep]


@dataclass(frozen=True)
class Letterbox:
    """Deterministic resize + pad to ``size_hw`` (evaluation, and the first step when no scale jitter is wanted)."""

    size_hw: tuple[int, int]

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        image, scale, px, py = letterbox(sample.image, self.size_hw)
        seg = sample.seg
        if seg.shape != image.shape[:2]:
            h, w = seg.shape
            seg = cv2.resize(seg, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)
            dh, dw = self.size_hw
            seg = cv2.copyMakeBorder(seg, py, dh - seg.shape[0] - py, px, dw - seg.shape[1] - px,
                                     cv2.BORDER_CONSTANT, value=IGNORE)
        boxes, labels = clip_boxes(letterbox_boxes(sample.boxes, scale, (px, py)), sample.labels, self.size_hw, 0.0, 0.0)
        ignore = _ignore_regions(sample, lambda b: letterbox_boxes(b, scale, (px, py)), self.size_hw)
        return replace(sample, image=image, seg=seg, boxes=boxes, labels=labels, ignore_boxes=ignore)


@dataclass(frozen=True)
class RandomScaleCrop:
    """Letterbox scale × U(scale_range), then a random crop (or random placement when smaller) into ``size_hw``."""

    size_hw: tuple[int, int]
    scale_range: tuple[float, float]
    min_size: float          # px: boxes thinner than this after the crop are dropped
    min_visible: float       # fraction of a box's area that must stay inside the crop

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h, w = sample.image.shape[:2]
        dh, dw = self.size_hw
        s = letterbox_params((h, w), self.size_hw)[0] * float(rng.uniform(*self.scale_range))
        nw, nh = w * s, h * s
        # Crop offset when the scaled image is larger, placement offset when smaller (uniform in both cases).
        tx = -float(rng.uniform(0, nw - dw)) if nw > dw else float(rng.uniform(0, dw - nw))
        ty = -float(rng.uniform(0, nh - dh)) if nh > dh else float(rng.uniform(0, dh - nh))
        return _warp(sample, s, (round(tx), round(ty)), self.size_hw, min_size=self.min_size, min_visible=self.min_visible)


def hflip(sample: Sample) -> Sample:
    w = sample.image.shape[1]

    def flip(b: np.ndarray) -> np.ndarray:
        return b[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1], np.float32) + np.array([w, 0, w, 0], np.float32)

    return replace(sample, image=cv2.flip(sample.image, 1), seg=cv2.flip(sample.seg, 1), boxes=flip(sample.boxes),
                   ignore_boxes=None if sample.ignore_boxes is None else flip(sample.ignore_boxes))


@dataclass(frozen=True)
class RandomHFlip:
    p: float

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        return hflip(sample) if rng.random() < self.p else sample


# ------------------------------------------------------------------------------------------ photometric


@dataclass(frozen=True)
class ColorJitter:
    """Brightness/contrast/saturation factors in [1 − x, 1 + x], hue shift in ±hue turns; all via uint8 LUTs."""

    brightness: float
    contrast: float
    saturation: float
    hue: float

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        b = 1 + float(rng.uniform(-self.brightness, self.brightness))
        c = 1 + float(rng.uniform(-self.contrast, self.contrast))
        sf = 1 + float(rng.uniform(-self.saturation, self.saturation))
        dh = float(rng.uniform(-self.hue, self.hue))
        img = sample.image
        if b != 1 or c != 1:
            mean = b * float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())
            v = np.arange(256, dtype=np.float32)
            lut = np.clip((v * b - mean) * c + mean, 0, 255).round().astype(np.uint8)
            img = cv2.LUT(img, lut)
        if sf != 1 or dh != 0:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)     # H in [0, 180)
            v = np.arange(256, dtype=np.float32)
            lut3 = np.stack([np.mod(np.round(v + dh * 180), 180), np.clip(np.round(v * sf), 0, 255), v], axis=-1)
            img = cv2.cvtColor(cv2.LUT(hsv, lut3.astype(np.uint8)[:, None, :]), cv2.COLOR_HSV2BGR)
        return replace(sample, image=img)


@dataclass(frozen=True)
class RandomCorruption:
    """With probability ``p``, one of ``names`` at a severity drawn from 1..``max_severity`` (corruptions.py)."""

    names: tuple[str, ...]
    max_severity: int
    p: float

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if not self.names or rng.random() >= self.p:
            return sample
        name = self.names[int(rng.integers(len(self.names)))]
        return replace(sample, image=corruptions.apply(sample.image, name, int(rng.integers(1, self.max_severity + 1)), rng))


@dataclass(frozen=True)
class Compose:
    transforms: tuple[Transform, ...]

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


# ------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; values come from a params file (no defaults here, see core/config.py)."""

    PARAM_FILE: ClassVar[str] = "training.param.yaml"
    height: int = field(metadata=prange(32, 4096, unit="px"))
    width: int = field(metadata=prange(32, 4096, unit="px"))
    scale_min: float = field(metadata=prange(0.1, 4.0))
    scale_max: float = field(metadata=prange(0.1, 4.0))
    flip_p: float = field(metadata=prange(0.0, 1.0))
    brightness: float = field(metadata=prange(0.0, 1.0))
    contrast: float = field(metadata=prange(0.0, 1.0))
    saturation: float = field(metadata=prange(0.0, 1.0))
    hue: float = field(metadata=prange(0.0, 0.5, unit="turn"))
    corruption_p: float = field(metadata=prange(0.0, 1.0))
    corruption_max_severity: int = field(metadata=prange(1, 5))
    corruptions: tuple[str, ...] = field(metadata=prange())     # names from corruptions.NAMES; empty = none
    min_box_size: float = field(metadata=prange(0.0, unit="px"))
    min_box_visible: float = field(metadata=prange(0.0, 1.0))

    def __post_init__(self) -> None:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min {self.scale_min} > scale_max {self.scale_max}")
        if self.height % 32 or self.width % 32:
            raise ValueError(f"training size {self.height}×{self.width} must be divisible by 32 (model stride)")
        unknown = sorted(set(self.corruptions) - set(corruptions.NAMES))
        if unknown:
            raise ValueError(f"unknown corruption(s) {unknown}; known: {list(corruptions.NAMES)}")


def train_transform(cfg: AugmentConfig) -> Compose:
    size = (cfg.height, cfg.width)
    steps: Sequence[Transform] = [
        RandomScaleCrop(size, (cfg.scale_min, cfg.scale_max), cfg.min_box_size, cfg.min_box_visible),
        RandomHFlip(cfg.flip_p),
        ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue),
        RandomCorruption(cfg.corruptions, cfg.corruption_max_severity, cfg.corruption_p),
    ]
    return Compose(tuple(steps))


def eval_transform(size_hw: tuple[int, int]) -> Letterbox:
    if size_hw[0] % 32 or size_hw[1] % 32:
        raise ConfigError(f"evaluation size {size_hw} must be divisible by 32 (model stride)")
    return Letterbox(size_hw)
