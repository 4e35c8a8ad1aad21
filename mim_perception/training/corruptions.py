"""ImageNet-C-style image corruptions for driving, severities 1–5 (numpy/cv2 only, seeded).

Used by training augmentation, robustness evaluation (mAP/mIoU per corruption and severity) and the drift
monitor's tests. ``apply(image, name, severity, rng)`` returns a new H×W×3 uint8 BGR image of the same size.
Photometric parameters follow ImageNet-C (Hendrycks & Dietterich 2019) where it has them; blur, rain and
snow sizes are fractions of the image width so a severity means the same at 320 and 1280 pixels wide.
Random draws happen in the same order whatever the severity, so one seed at severities 1..5 gives the same
noise pattern / streak layout getting stronger (the tests check damage grows with severity).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from mim_perception.core.errors import ConfigError

NAMES = ("gaussian_noise", "motion_blur", "defocus_blur", "fog", "rain", "night", "jpeg", "brightness", "contrast", "snow",
         "occlusion")
SEVERITIES = (1, 2, 3, 4, 5)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).round().astype(np.uint8) if x.dtype != np.uint8 else x


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """Normalised 1-px line of ``length`` px through the kernel centre at ``angle_deg`` (0 = horizontal)."""
    n = max(3, int(np.ceil(length)) | 1)
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle_deg)) * (length - 1) / 2, np.sin(np.deg2rad(angle_deg)) * (length - 1) / 2
    shift = 4   # sub-pixel end points (cv2 fixed point)
    p0 = (round((c - dx) * 16), round((c - dy) * 16))
    p1 = (round((c + dx) * 16), round((c + dy) * 16))
    cv2.line(k, p0, p1, 1.0, 1, cv2.LINE_AA, shift)
    return k / k.sum()


def gaussian_noise(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.08, 0.12, 0.18, 0.26, 0.38)[s] * 255
    return _u8(img + rng.standard_normal(img.shape, dtype=np.float32) * sigma)


def motion_blur(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    length = img.shape[1] * (0.012, 0.02, 0.032, 0.048, 0.065)[s]
    return cv2.filter2D(img, -1, _line_kernel(length, float(rng.uniform(-45, 45))), borderType=cv2.BORDER_REFLECT)


def defocus_blur(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    r = img.shape[1] * (0.004, 0.007, 0.011, 0.016, 0.023)[s]
    n = int(np.ceil(r)) * 2 + 1
    k = np.zeros((n, n), np.float32)
    cv2.circle(k, ((n - 1) * 8, (n - 1) * 8), round(r * 16), 1.0, -1, cv2.LINE_AA, 4)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


def _low_freq(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1], ``cells`` control points across the width."""
    gw = max(2, cells)
    gh = max(2, round(cells * h / w))
    small = rng.random((gh, gw)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), max(w / cells / 2, 1))


def fog(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    a = (0.25, 0.4, 0.55, 0.7, 0.82)[s]
    h, w = img.shape[:2]
    density = a * np.clip(0.65 + 0.6 * (_low_freq(rng, h, w, 8) - 0.5), 0, 1)[..., None]
    return _u8(img.astype(np.float32) * (1 - density) + np.float32(215.0) * density)


def _streaks(rng: np.random.Generator, hw: tuple[int, int], density: float, length: float, angle: float) -> np.ndarray:
    """Bright line segments from random seed points: H×W float32 in [0, 1]."""
    h, w = hw
    seeds = (rng.random((h, w), dtype=np.float32) < density).astype(np.float32)
    k = _line_kernel(length, angle)
    return np.clip(cv2.filter2D(seeds, -1, k / k.max(), borderType=cv2.BORDER_CONSTANT), 0, 1)


def rain(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    angle = 90 + float(rng.uniform(-20, 20))      # near vertical
    m = _streaks(rng, (h, w), (0.002, 0.004, 0.007, 0.01, 0.015)[s], w * (0.015, 0.022, 0.03, 0.038, 0.048)[s], angle)
    dim = (0.95, 0.9, 0.85, 0.8, 0.75)[s]        # overcast
    m = cv2.GaussianBlur(m, (3, 3), 0)[..., None] * np.float32(0.7)
    return _u8(img.astype(np.float32) * np.float32(dim) * (1 - m) + np.float32(210.0) * m)


def snow(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    seeds = (rng.random((h, w), dtype=np.float32) < (0.0015, 0.003, 0.005, 0.008, 0.012)[s]).astype(np.float32)
    r = max(1, round(w * (0.0015, 0.002, 0.003, 0.0035, 0.004)[s]))
    flakes = cv2.dilate(seeds, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    flakes = cv2.filter2D(flakes, -1, _line_kernel(2.5 * r, 90 + float(rng.uniform(-30, 30))))
    flakes = np.clip(cv2.GaussianBlur(flakes, (0, 0), r / 2) * 1.5, 0, 1)[..., None]
    c = (0.9, 0.8, 0.7, 0.6, 0.5)[s]                # ImageNet-C: blend towards a brightened grey
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
    f = img.astype(np.float32)
    x = np.float32(c) * f + np.float32(1 - c) * np.maximum(f, gray * np.float32(1.5) + np.float32(0.5))
    return _u8(x * (1 - flakes) + np.float32(245.0) * flakes)


def night(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    gamma = (1.3, 1.6, 2.0, 2.4, 2.8)[s]
    gain = (0.8, 0.65, 0.5, 0.4, 0.3)[s]
    sigma = (2.0, 3.0, 4.0, 5.0, 6.0)[s]          # sensor noise amplified by the gain
    lut = (255 * gain * (np.arange(256) / 255.0) ** gamma).astype(np.float32)
    dark = cv2.LUT(img, lut)
    return _u8(dark + rng.standard_normal(img.shape, dtype=np.float32) * sigma)


def jpeg(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    q = (25, 18, 15, 10, 7)[s]
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
    if out is None:
        raise ConfigError(f"jpeg corruption: cv2 JPEG round trip failed for {img.shape}")
    return out


def brightness(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    lut = np.clip(np.arange(256) + round((0.1, 0.2, 0.3, 0.4, 0.5)[s] * 255), 0, 255).astype(np.uint8)
    hsv[..., 2] = cv2.LUT(hsv[..., 2], lut)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def contrast(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    c = (0.4, 0.3, 0.2, 0.1, 0.05)[s]
    mean = img.reshape(-1, 3).mean(axis=0).astype(np.float32)
    return _u8((img.astype(np.float32) - mean) * np.float32(c) + mean)


def occlusion(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Grey/dark patches (dirt, a wiper, a sticker on the lens) covering a growing fraction of the frame."""
    out = img.copy()
    h, w = img.shape[:2]
    target = (0.03, 0.06, 0.10, 0.15, 0.22)[s]
    covered = np.zeros((h, w), bool)
    # Patches of at most 1/6 × 1/6 of the frame (2.8 %) < the step between severities: damage grows strictly.
    while covered.mean() < target:
        ph, pw = int(rng.integers(h // 16 + 1, h // 6 + 2)), int(rng.integers(w // 16 + 1, w // 6 + 2))
        y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
        out[y:y + ph, x:x + pw] = int(rng.integers(10, 90))
        covered[y:y + ph, x:x + pw] = True
    return out


_FUNCS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise, "motion_blur": motion_blur, "defocus_blur": defocus_blur, "fog": fog,
    "rain": rain, "night": night, "jpeg": jpeg, "brightness": brightness, "contrast": contrast, "snow": snow,
    "occlusion": occlusion,
}


def apply(image: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``image`` (H×W×3 uint8 BGR) corrupted by ``name`` at ``severity`` (1–5); a new array, same shape and dtype."""
    if name not in _FUNCS:
        raise ConfigError(f"unknown corruption {name!r}; known: {list(NAMES)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"corruption severity must be 1..5, got {severity}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"corruptions need an H×W×3 uint8 image, got {image.dtype} {image.shape}")
    return _FUNCS[name](np.ascontiguousarray(image), severity - 1, rng)
