"""External-detector adapters on tiny ONNX graphs with known outputs: exact decode, exact letterbox inverse, NMS vs
no-NMS, class mapping with cyclist fusion, input contracts, and bad bundles failing with a named error."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import onnx_constant_model

from mim_perception.core.config import config_dir
from mim_perception.core.errors import ConfigError, ModelLoadError
from mim_perception.inference.adapters import InputContract, YoloxAdapter, grid, prepare
from mim_perception.inference.external import ClassMap, ExternalDetector, import_model, load_class_names, open_external

COCO = load_class_names("coco")
PERSON, BICYCLE, CAR, TRUCK = 0, 1, 2, 7
DRIVING = config_dir() / "class_maps" / "coco_to_driving.yaml"


def _yolox_outputs(size: int = 64) -> np.ndarray:
    """1×A×85: one car at stride-8 cell (3, 2) (centre (28, 20), 16×32 px, obj 0.9, car 0.8); the rest empty."""
    cells, _ = grid(size, size, (8, 16, 32))
    out = np.zeros((1, len(cells), 85), np.float32)
    k = int(np.flatnonzero((cells[:, 0] == 3) & (cells[:, 1] == 2))[0])
    out[0, k, :5] = [0.5, 0.5, math.log(2.0), math.log(4.0), 0.9]
    out[0, k, 5 + CAR] = 0.8
    return out


def test_yolox_decode_and_top_left_letterbox_inverse_are_exact(tmp_path: Path) -> None:
    onnx = onnx_constant_model(tmp_path / "m.onnx", [1, 3, 64, 64], {"output": _yolox_outputs()})
    det = ExternalDetector.open(onnx, "yolox", class_names=COCO)
    d = det.detect(np.zeros((128, 128, 3), np.uint8), threshold=0.5)
    # model box [20, 4, 36, 36] at scale 0.5, top-left placement -> camera ×2
    np.testing.assert_allclose(d.boxes, [[40, 8, 72, 72]], atol=1e-4)
    np.testing.assert_allclose(d.scores, [0.72], atol=1e-6)
    assert d.labels.tolist() == [CAR]


def test_nanodet_distribution_decode_and_centred_letterbox(tmp_path: Path) -> None:
    outs = {}
    for s in (8, 16, 32):
        n = (64 // s) ** 2
        outs[f"cls_pred_stride_{s}"] = np.zeros((1, n, 80), np.float32)
        outs[f"dis_pred_stride_{s}"] = np.zeros((1, n, 32), np.float32)
    k = 2 * 8 + 3                                                # row 2, column 3 of the stride-8 grid
    outs["cls_pred_stride_8"][0, k, CAR] = 0.9
    dist = np.full((4, 8), -30.0, np.float32)
    dist[:, 1] = 30.0                                            # every side 1 bin = 8 px from the point
    outs["dis_pred_stride_8"][0, k] = dist.ravel()
    onnx = onnx_constant_model(tmp_path / "n.onnx", [1, 3, 64, 64], outs, input_name="input.1")
    det = ExternalDetector.open(onnx, "nanodet", class_names=COCO)
    d = det.detect(np.zeros((64, 128, 3), np.uint8), threshold=0.5)
    # point (27.5, 19.5) ± 8 -> [19.5, 11.5, 35.5, 27.5]; the 128×64 frame is 64×32 centred at y offset 16, scale 0.5
    np.testing.assert_allclose(d.boxes, [[39, 0, 71, 23]], atol=1e-3)   # y -9 clipped to the frame
    np.testing.assert_allclose(d.scores, [0.9], atol=1e-6)


def _ultra(boxes: list[list[float]], cls: list[int], scores: list[float], n: int = 10) -> np.ndarray:
    out = np.zeros((1, 84, n), np.float32)
    for j, (b, c, s) in enumerate(zip(boxes, cls, scores, strict=True)):
        out[0, :4, j] = b
        out[0, 4 + c, j] = s
    return out


def test_ultralytics_applies_nms_and_rtdetr_does_not(tmp_path: Path) -> None:
    two = [[32, 32, 20, 10], [33, 32, 20, 10]]                    # cx, cy, w, h: IoU ≈ 0.9, same class
    onnx = onnx_constant_model(tmp_path / "u.onnx", [1, 3, 64, 64], {"output0": _ultra(two, [CAR, CAR], [0.9, 0.8])})
    d = ExternalDetector.open(onnx, "ultralytics", class_names=COCO).detect(np.zeros((64, 64, 3), np.uint8), 0.5)
    assert len(d) == 1 and d.scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(d.boxes, [[22, 27, 42, 37]], atol=1e-4)
    rt = np.zeros((1, 10, 84), np.float32)
    for j, (b, s) in enumerate(zip(two, [0.9, 0.8], strict=True)):
        rt[0, j, :4] = np.array(b) / 64.0                            # normalised cx, cy, w, h
        rt[0, j, 4 + CAR] = s
    onnx = onnx_constant_model(tmp_path / "r.onnx", [1, 3, 64, 64], {"logits_boxes": rt})
    d = ExternalDetector.open(onnx, "rtdetr", class_names=COCO).detect(np.zeros((32, 32, 3), np.uint8), 0.5)
    assert len(d) == 2                                             # set prediction: both kept
    np.testing.assert_allclose(d.boxes[0], [11, 13.5, 21, 18.5], atol=1e-4)   # stretch: 64 -> 32 is ×0.5


def test_class_map_fuses_riders_into_cyclists_and_drops_lone_bicycles(tmp_path: Path) -> None:
    boxes = [[20, 20, 10, 20],    # person 15..25 × 10..30 (lower half 20..30)
             [20, 28, 14, 12],    # bicycle 13..27 × 22..34: under the person
             [50, 50, 10, 10],    # lone bicycle
             [10, 50, 12, 12]]    # truck
    onnx = onnx_constant_model(tmp_path / "u.onnx", [1, 3, 64, 64],
                               {"output0": _ultra(boxes, [PERSON, BICYCLE, BICYCLE, TRUCK], [0.8, 0.7, 0.9, 0.6])})
    det = ExternalDetector.open(onnx, "ultralytics", class_names=COCO, class_map=ClassMap.load(DRIVING))
    d = det.detect(np.zeros((64, 64, 3), np.uint8), 0.5)
    names = [det.targets[c] for c in d.labels]
    assert sorted(names) == ["cyclist", "truck"]
    np.testing.assert_allclose(d.boxes[names.index("cyclist")], [13, 10, 27, 34], atol=1e-4)   # person ∪ bicycle


def test_prepare_honours_the_contract() -> None:
    img = np.zeros((2, 4, 3), np.uint8)
    img[..., 0], img[..., 2] = 10, 200                              # B = 10, R = 200
    c = InputContract(4, 4, "rgb", 0.5, (1.0, 2.0, 3.0), (2.0, 2.0, 2.0), placement="centre", pad_value=100.0)
    x, g = prepare(img, c)
    assert x.shape == (1, 3, 4, 4) and (g.px, g.py, g.sx) == (0, 1, 1.0)
    assert x[0, 0, 1, 0] == pytest.approx((200 * 0.5 - 1) / 2)       # red first (rgb)
    assert x[0, 2, 1, 0] == pytest.approx((10 * 0.5 - 3) / 2)
    assert x[0, 0, 0, 0] == pytest.approx((100 * 0.5 - 1) / 2)       # pad row above (centred)


def test_import_writes_a_verified_bundle_and_bad_ones_fail_by_name(tmp_path: Path) -> None:
    onnx = onnx_constant_model(tmp_path / "y.onnx", [1, 3, 64, 64], {"output": _yolox_outputs()})
    m = import_model(onnx, tmp_path / "b", "yolox", classes="coco", class_map=DRIVING)
    det, man = open_external(tmp_path / "b")
    assert man.adapter == "yolox" and man.detection_classes[0] == "car" and man.external
    assert det.detect(np.zeros((64, 64, 3), np.uint8), 0.5).labels.tolist() == [0]   # COCO car -> stack car
    assert m.sha256["model.onnx"]
    with pytest.raises(ModelLoadError, match="nanodet adapter expects"):
        import_model(onnx, tmp_path / "c", "nanodet", classes="coco")
    names = tmp_path / "three.yaml"
    names.write_text("names: [a, b, c]\n")
    with pytest.raises(ModelLoadError, match="yolox adapter expects"):      # 85 columns != 5 + 3 classes
        import_model(onnx, tmp_path / "d", "yolox", classes=str(names))
    with pytest.raises(ModelLoadError, match="contract says"):
        import_model(onnx, tmp_path / "e", "yolox", classes="coco", contract=YoloxAdapter().default_contract(32, 32))
    u8 = onnx_constant_model(tmp_path / "u8.onnx", [1, 3, 64, 64], {"output": _yolox_outputs()}, input_type=2)
    with pytest.raises(ModelLoadError, match="float32"):
        import_model(u8, tmp_path / "f", "yolox", classes="coco")
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("map: {car: spaceship}\n")
    with pytest.raises(ConfigError, match="spaceship"):
        import_model(onnx, tmp_path / "g", "yolox", classes="coco", class_map=bad_map)
    missing = tmp_path / "missing.yaml"
    missing.write_text("map: {lorry: truck}\n")
    with pytest.raises(ModelLoadError, match="lorry"):
        import_model(onnx, tmp_path / "h", "yolox", classes="coco", class_map=missing)
    with open(tmp_path / "b" / "model.onnx", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ModelLoadError, match="sha256"):
        open_external(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["adapter"] == "yolox"
