"""Augmentation geometry (letterbox/flip/crop keep boxes and masks aligned) and the corruption set."""

from __future__ import annotations

import itertools
from dataclasses import replace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mim_perception.core.config import from_params
from mim_perception.core.errors import ConfigError
from mim_perception.core.labels import IGNORE, LabelSpace
from mim_perception.core.preprocess import PAD_VALUE, letterbox, letterbox_boxes, letterbox_params, unletterbox_boxes
from mim_perception.sim.synthetic import SceneConfig, SyntheticScene
from mim_perception.training import corruptions
from mim_perception.training.augment import (
    AugmentConfig,
    ColorJitter,
    Letterbox,
    RandomCorruption,
    RandomScaleCrop,
    eval_transform,
    hflip,
    train_transform,
)
from mim_perception.training.data import Sample

FAST = settings(max_examples=40, deadline=None, database=None)
OBJ = 7   # seg label painted under the test object


def _boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    x0, y0 = rng.uniform(0, w - 2, n), rng.uniform(0, h - 2, n)
    return np.column_stack([x0, y0, rng.uniform(x0 + 1, w), rng.uniform(y0 + 1, h)]).astype(np.float32)


def _object_sample(rng: np.random.Generator, h: int, w: int) -> Sample:
    """Random image, background seg 0, one axis-aligned object with integer box painted as OBJ."""
    x0, y0 = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
    x1, y1 = int(rng.integers(x0 + 6, min(w, x0 + w // 2) + 1)), int(rng.integers(y0 + 6, min(h, y0 + h // 2) + 1))
    seg = np.zeros((h, w), np.uint8)
    seg[y0:y1, x0:x1] = OBJ
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Sample(image, np.array([[x0, y0, x1, y1]], np.float32), np.array([2]), seg)


def _extent(seg: np.ndarray, label: int) -> np.ndarray:
    ys, xs = np.nonzero(seg == label)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


@FAST
@given(st.integers(16, 2000), st.integers(16, 2000), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_letterbox_box_round_trip(h: int, w: int, dh32: int, dw32: int, seed: int) -> None:
    dst = (dh32 * 32, dw32 * 32)
    boxes = _boxes(np.random.default_rng(seed), 5, w, h)
    scale, px, py = letterbox_params((h, w), dst)
    lb = letterbox_boxes(boxes, scale, (px, py))
    # Inside the content area (up to the rounding of the resized size), and exactly invertible.
    assert (lb[:, [0, 2]] >= px - 1e-3).all() and (lb[:, [0, 2]] <= dst[1] - px + 1).all()
    assert (lb[:, [1, 3]] >= py - 1e-3).all() and (lb[:, [1, 3]] <= dst[0] - py + 1).all()
    np.testing.assert_allclose(unletterbox_boxes(lb, scale, (px, py)), boxes, rtol=1e-5, atol=1e-3 * max(h, w) / 100)


def test_letterbox_image_size_padding_and_sample_alignment() -> None:
    rng = np.random.default_rng(0)
    s = _object_sample(rng, 100, 300)
    img, scale, px, py = letterbox(s.image, (256, 384))
    assert img.shape == (256, 384, 3) and px == 0 and py > 0 and scale == pytest.approx(384 / 300)
    assert (img[: py - 1] == PAD_VALUE).all() and (img[-(py - 1):] == PAD_VALUE).all()
    out = Letterbox((256, 384))(s)
    assert out.seg.shape == (256, 384) and (out.seg[:py] == IGNORE).all()
    np.testing.assert_allclose(_extent(out.seg, OBJ), out.boxes[0], atol=1.01)


@FAST
@given(st.integers(0, 2**32 - 1))
def test_flip_twice_is_identity_and_keeps_box_pixels(seed: int) -> None:
    s = _object_sample(np.random.default_rng(seed), 48, 80)
    f = hflip(s)
    np.testing.assert_array_equal(_extent(f.seg, OBJ), f.boxes[0])
    back = hflip(f)
    assert np.array_equal(back.image, s.image) and np.array_equal(back.seg, s.seg)
    np.testing.assert_array_equal(back.boxes, s.boxes)


@FAST
@given(st.integers(0, 2**32 - 1), st.floats(0.3, 2.5), st.sampled_from([(64, 96), (96, 64), (128, 128)]))
def test_scale_crop_keeps_seg_and_boxes_aligned(seed: int, jitter: float, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(seed)
    s = _object_sample(rng, 90, 150)
    out = RandomScaleCrop(size, (jitter, jitter), min_size=2.0, min_visible=0.3)(s, rng)
    assert out.image.shape == (*size, 3) and out.seg.shape == size and out.image.dtype == np.uint8
    assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64
    scale = letterbox_params((90, 150), size)[0] * jitter
    ow, oh = s.boxes[0, 2] - s.boxes[0, 0], s.boxes[0, 3] - s.boxes[0, 1]
    visible = int((out.seg == OBJ).sum())
    if len(out.boxes):
        b = out.boxes[0]
        assert ((b >= 0) & (b <= np.array([size[1], size[0]] * 2))).all()
        assert b[2] - b[0] >= 2 and b[3] - b[1] >= 2
        assert b[2] - b[0] <= scale * ow + 1e-3 and b[3] - b[1] <= scale * oh + 1e-3   # clipped, never grown
        # Nearest-neighbour mask vs the mapped box: the same region up to one pixel at each edge.
        np.testing.assert_allclose(_extent(out.seg, OBJ), b, atol=1.01)
    else:   # dropped: under 30 % of the scaled object left in view (mask area, with a one-pixel rim of slack)
        assert visible <= 0.3 * scale**2 * ow * oh + 2 * scale * (ow + oh) + 4 or visible == 0


def test_train_transform_on_generated_frames_keeps_classes_under_boxes() -> None:
    labels = LabelSpace.load()
    frames = list(SyntheticScene(replace(SceneConfig(), width=320, height=192, frames=3, seed=2)).frames())
    cfg = AugmentConfig(height=192, width=320, scale_min=0.6, scale_max=1.6, flip_p=0.5, brightness=0.3, contrast=0.3,
                        saturation=0.3, hue=0.05, corruption_p=0.5, corruption_max_severity=3, corruptions=corruptions.NAMES,
                        min_box_size=3.0, min_box_visible=0.3)
    tf = train_transform(cfg)
    checked = 0
    for k, f in enumerate(frames):
        s = Sample(f.image, f.boxes, f.labels, f.seg)
        for rep in range(4):
            out = tf(s, np.random.default_rng([k, rep]))
            again = tf(s, np.random.default_rng([k, rep]))
            assert np.array_equal(out.image, again.image) and np.array_equal(out.boxes, again.boxes), "deterministic"
            for (x0, y0, x1, y1), det in zip(out.boxes.round().astype(int), out.labels):
                assert (out.seg[y0:y1, x0:x1] == labels.det_to_seg[det]).any()
                checked += 1
    assert checked > 10


def test_color_jitter_and_corruption_transforms() -> None:
    s = _object_sample(np.random.default_rng(5), 64, 96)
    same = ColorJitter(0, 0, 0, 0)(s, np.random.default_rng(0))
    assert np.array_equal(same.image, s.image)
    out = ColorJitter(0.4, 0.4, 0.4, 0.1)(s, np.random.default_rng(0))
    assert out.image.shape == s.image.shape and not np.array_equal(out.image, s.image)
    assert np.array_equal(out.boxes, s.boxes) and np.array_equal(out.seg, s.seg)
    c = RandomCorruption(("fog",), 5, 1.0)(s, np.random.default_rng(0))
    assert not np.array_equal(c.image, s.image) and np.array_equal(c.seg, s.seg)
    assert RandomCorruption(("fog",), 5, 0.0)(s, np.random.default_rng(0)) is s


def test_augment_config_validation_and_loading() -> None:
    params = {"height": 192, "width": 320, "scale_min": 0.5, "scale_max": 1.5, "flip_p": 0.5, "brightness": 0.2,
              "contrast": 0.2, "saturation": 0.2, "hue": 0.02, "corruption_p": 0.2, "corruption_max_severity": 3,
              "corruptions": ["fog", "rain"], "min_box_size": 2.0, "min_box_visible": 0.25}
    cfg = from_params(AugmentConfig, params)
    assert cfg.corruptions == ("fog", "rain")
    for bad in ({"corruptions": ["smog"]}, {"height": 100}, {"scale_min": 2.0}, {"flip_p": 1.5}):
        with pytest.raises(ConfigError):
            from_params(AugmentConfig, {**params, **bad})
    with pytest.raises(ConfigError, match="divisible"):
        eval_transform((100, 320))


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return next(SyntheticScene(replace(SceneConfig(), width=320, height=192, frames=1, seed=4)).frames()).image


@pytest.mark.parametrize("name", corruptions.NAMES)
def test_corruption_keeps_shape_and_damage_grows_with_severity(name: str, frame: np.ndarray) -> None:
    psnr = []
    for sev in corruptions.SEVERITIES:
        out = corruptions.apply(frame, name, sev, np.random.default_rng(0))
        assert out.shape == frame.shape and out.dtype == np.uint8
        assert np.array_equal(out, corruptions.apply(frame, name, sev, np.random.default_rng(0))), "seeded"
        psnr.append(cv2.PSNR(frame, out))
    assert all(a > b for a, b in itertools.pairwise(psnr)), f"{name}: PSNR by severity {psnr}"
    assert psnr[-1] < 33.0, f"{name} at severity 5 barely changes the image"


def test_corruption_argument_errors(frame: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="unknown corruption"):
        corruptions.apply(frame, "smog", 1, rng)
    with pytest.raises(ConfigError, match="severity"):
        corruptions.apply(frame, "fog", 6, rng)
    with pytest.raises(ConfigError, match="H×W×3 uint8"):
        corruptions.apply(frame[..., 0], "fog", 1, rng)
