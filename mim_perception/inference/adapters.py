"""Output conventions of external detectors (YOLOX, Ultralytics YOLOv8/11, NanoDet, RT-DETR) behind one protocol.

An adapter knows two things about a family of exported models: the **input contract** (size, colour order, value
scaling and normalisation, letterbox placement and pad value) and how to **decode** the raw outputs into candidate
boxes (xyxy, model-input pixels) with per-class scores. Thresholding, NMS, class mapping and the way back to camera
pixels are shared (``external.py``). numpy only; no ROS, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.preprocess import Geometry

PLACEMENTS = ("top-left", "centre", "stretch")


@dataclass(frozen=True)
class InputContract:
    height: int
    width: int
    color: str = "bgr"                                  # channel order the model wants: bgr | rgb
    scale: float = 1.0                                  # pixel values × scale, then (x - mean) / std
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the model's channel order, after scaling
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    placement: str = "top-left"                         # letterbox placement, or stretch (no aspect kept)
    pad_value: float = 114.0                            # border pixel value, before scaling/normalisation

    def __post_init__(self) -> None:
        if self.color not in ("bgr", "rgb") or self.placement not in PLACEMENTS or min(self.height, self.width) < 1:
            raise ModelLoadError(f"bad input contract {self}: color bgr|rgb, placement {'|'.join(PLACEMENTS)}, size >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputContract:
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})   # type: ignore[arg-type]
        except TypeError as e:
            raise ModelLoadError(f"malformed input contract {d}: {e}") from e


def prepare(image: np.ndarray, c: InputContract) -> tuple[np.ndarray, Geometry]:
    """BGR uint8 H×W×3 -> (float32 1×3×h×w tensor per the contract, geometry)."""
    h, w = image.shape[:2]
    if c.placement == "stretch":
        sx, sy = c.width / w, c.height / h
        canvas = cv2.resize(image, (c.width, c.height), interpolation=cv2.INTER_LINEAR)
        px = py = 0
    else:
        # YOLOX / NanoDet reference preprocessing: size truncated, boxes mapped back by the scale itself
        s = min(c.height / h, c.width / w)
        nw, nh = max(1, int(w * s)), max(1, int(h * s))
        px, py = ((c.width - nw) // 2, (c.height - nh) // 2) if c.placement == "centre" else (0, 0)
        canvas = np.full((c.height, c.width, 3), c.pad_value, np.float32)
        canvas[py:py + nh, px:px + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        sx = sy = s
    x = canvas.astype(np.float32)
    if c.color == "rgb":
        x = x[..., ::-1]
    y = (x * np.float32(c.scale) - np.asarray(c.mean, np.float32)) / np.asarray(c.std, np.float32)
    return np.ascontiguousarray(y.transpose(2, 0, 1)[None], np.float32), Geometry(sx, sy, px, py)


class Adapter(Protocol):
    name: ClassVar[str]
    nms: ClassVar[bool]                       # False: the model's outputs are already final (RT-DETR)

    def default_contract(self, height: int, width: int) -> InputContract: ...

    def check_outputs(self, outputs: Sequence[tuple[str, Sequence[int | str | None]]], num_classes: int,
                      contract: InputContract) -> None:
        """Raise ModelLoadError if (name, shape) outputs are not this adapter's convention."""
        ...

    def decode(self, outputs: dict[str, np.ndarray], contract: InputContract) -> tuple[np.ndarray, np.ndarray]:
        """-> (boxes N×4 xyxy model pixels, class scores N×C in [0, 1])."""
        ...


def grid(h: int, w: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Row-major cell indices of every level: (A×2 xy cell index float32, A stride)."""
    cells, strs = [], []
    for s in strides:
        ys, xs = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
        cells.append(np.stack([xs, ys], -1).reshape(-1, 2))
        strs.append(np.full(cells[-1].shape[0], s, np.float32))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strs)


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise ModelLoadError(what)


def _single(outputs: dict[str, np.ndarray]) -> np.ndarray:
    return next(iter(outputs.values()))


def _anchors(contract: InputContract, strides: Sequence[int]) -> int:
    return sum((contract.height // s) * (contract.width // s) for s in strides)


@dataclass(frozen=True)
class YoloxAdapter:
    """Megvii YOLOX export: one output 1×A×(5+C) = raw (dx, dy, log w, log h), objectness, class probabilities on
    row-major grids of strides 8/16/32; box centre (cell + d)·s, size exp(log)·s; score = objectness · class."""

    name: ClassVar[str] = "yolox"
    nms: ClassVar[bool] = True
    strides: tuple[int, ...] = (8, 16, 32)

    def default_contract(self, height: int, width: int) -> InputContract:
        return InputContract(height, width, "bgr", 1.0, placement="top-left", pad_value=114.0)

    def check_outputs(self, outputs: Sequence[tuple[str, Sequence[int | str | None]]], num_classes: int,
                      contract: InputContract) -> None:
        a = _anchors(contract, self.strides)
        _need(len(outputs) == 1 and list(outputs[0][1])[1:] == [a, 5 + num_classes],
              f"yolox adapter expects one output 1×{a}×{5 + num_classes}, the model has {list(outputs)}")

    def decode(self, outputs: dict[str, np.ndarray], contract: InputContract) -> tuple[np.ndarray, np.ndarray]:
        out = _single(outputs)[0].astype(np.float32)                       # A×(5+C)
        cells, s = grid(contract.height, contract.width, self.strides)
        xy = (out[:, :2] + cells) * s[:, None]
        wh = np.exp(np.minimum(out[:, 2:4], 20.0)) * s[:, None]
        return np.concatenate([xy - wh / 2, xy + wh / 2], 1), out[:, 5:] * out[:, 4:5]


@dataclass(frozen=True)
class UltralyticsAdapter:
    """Ultralytics YOLOv8 / YOLO11 export: 1×(4+C)×N, rows cx, cy, w, h (input pixels) then class scores."""

    name: ClassVar[str] = "ultralytics"
    nms: ClassVar[bool] = True

    def default_contract(self, height: int, width: int) -> InputContract:
        return InputContract(height, width, "rgb", 1 / 255, placement="centre", pad_value=114.0)

    def check_outputs(self, outputs: Sequence[tuple[str, Sequence[int | str | None]]], num_classes: int,
                      contract: InputContract) -> None:
        _need(len(outputs) == 1 and len(outputs[0][1]) == 3 and outputs[0][1][1] == 4 + num_classes,
              f"ultralytics adapter expects one output 1×{4 + num_classes}×N, the model has {list(outputs)}")

    def decode(self, outputs: dict[str, np.ndarray], contract: InputContract) -> tuple[np.ndarray, np.ndarray]:
        out = _single(outputs)[0].astype(np.float32).T                     # N×(4+C)
        c, wh = out[:, :2], out[:, 2:4]
        return np.concatenate([c - wh / 2, c + wh / 2], 1), out[:, 4:]


@dataclass(frozen=True)
class NanoDetAdapter:
    """NanoDet (GFL) export: per stride S ``cls_pred_stride_S`` N×C (sigmoid applied) and ``dis_pred_stride_S``
    N×4·(R+1) (distances to the left/top/right/bottom side as R+1-bin distributions: softmax, expected bin, × S)
    from the anchor point (x·S + (S−1)/2, y·S + (S−1)/2) of a row-major grid."""

    name: ClassVar[str] = "nanodet"
    nms: ClassVar[bool] = True
    strides: tuple[int, ...] = (8, 16, 32)
    reg_max: int = 7

    def default_contract(self, height: int, width: int) -> InputContract:
        return InputContract(height, width, "bgr", 1.0, (103.53, 116.28, 123.675), (57.375, 57.12, 58.395),
                             placement="centre", pad_value=0.0)

    def check_outputs(self, outputs: Sequence[tuple[str, Sequence[int | str | None]]], num_classes: int,
                      contract: InputContract) -> None:
        names = dict(outputs)
        for s in self.strides:
            n = (contract.height // s) * (contract.width // s)
            cls, dis = names.get(f"cls_pred_stride_{s}"), names.get(f"dis_pred_stride_{s}")
            _need(cls is not None and dis is not None and list(cls)[-2:] == [n, num_classes]
                  and list(dis)[-2:] == [n, 4 * (self.reg_max + 1)],
                  f"nanodet adapter expects cls_pred_stride_{s} {n}×{num_classes} and dis_pred_stride_{s} "
                  f"{n}×{4 * (self.reg_max + 1)}, the model has {list(outputs)}")

    def decode(self, outputs: dict[str, np.ndarray], contract: InputContract) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = [], []
        bins = np.arange(self.reg_max + 1, dtype=np.float32)
        for s in self.strides:
            h, w = contract.height // s, contract.width // s
            cls = outputs[f"cls_pred_stride_{s}"].reshape(h * w, -1).astype(np.float32)
            dis = outputs[f"dis_pred_stride_{s}"].reshape(h * w, 4, self.reg_max + 1).astype(np.float32)
            e = np.exp(dis - dis.max(-1, keepdims=True))
            d = (e / e.sum(-1, keepdims=True) * bins).sum(-1) * s                        # N×4 ltrb px
            ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            p = np.stack([xs.ravel() * s + (s - 1) / 2, ys.ravel() * s + (s - 1) / 2], 1).astype(np.float32)
            boxes.append(np.concatenate([p - d[:, :2], p + d[:, 2:]], 1))
            scores.append(cls)
        return np.concatenate(boxes), np.concatenate(scores)


@dataclass(frozen=True)
class RtDetrAdapter:
    """RT-DETR style: 1×N×(4+C), boxes as normalised cx, cy, w, h, then class scores (sigmoid applied); the set
    prediction is already de-duplicated, so no NMS."""

    name: ClassVar[str] = "rtdetr"
    nms: ClassVar[bool] = False

    def default_contract(self, height: int, width: int) -> InputContract:
        return InputContract(height, width, "rgb", 1 / 255, placement="stretch", pad_value=0.0)

    def check_outputs(self, outputs: Sequence[tuple[str, Sequence[int | str | None]]], num_classes: int,
                      contract: InputContract) -> None:
        _need(len(outputs) == 1 and len(outputs[0][1]) == 3 and outputs[0][1][2] == 4 + num_classes,
              f"rtdetr adapter expects one output 1×N×{4 + num_classes}, the model has {list(outputs)}")

    def decode(self, outputs: dict[str, np.ndarray], contract: InputContract) -> tuple[np.ndarray, np.ndarray]:
        out = _single(outputs)[0].astype(np.float32)
        size = np.array([contract.width, contract.height], np.float32)
        c, wh = out[:, :2] * size, out[:, 2:4] * size
        return np.concatenate([c - wh / 2, c + wh / 2], 1), out[:, 4:]


ADAPTERS: dict[str, Adapter] = {a.name: a for a in (YoloxAdapter(), UltralyticsAdapter(), NanoDetAdapter(), RtDetrAdapter())}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise ModelLoadError(f"unknown adapter {name!r}; known: {', '.join(sorted(ADAPTERS))}") from None


@dataclass
class Candidates:
    """Decoded candidates before class mapping: boxes N×4 (model px), best class score N, class index N."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def best_class(boxes: np.ndarray, class_scores: np.ndarray, threshold: float) -> Candidates:
    """Each candidate's best class, kept where its score >= ``threshold``."""
    cls = class_scores.argmax(1)
    sc = class_scores[np.arange(len(cls)), cls]
    keep = np.isfinite(sc) & (sc >= threshold) & np.isfinite(boxes).all(1)
    return Candidates(boxes[keep].astype(np.float32), sc[keep].astype(np.float32), cls[keep].astype(np.int64))
