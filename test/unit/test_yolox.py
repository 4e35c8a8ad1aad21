"""The YOLOX-nano det+seg model: the stack's box convention equals YOLOX's decode, weights import from an exported
YOLOX graph (round trip here; the real COCO teacher where the real data exists), and the teachers' pseudo-labels on a
real KITTI frame find its ground-truth cars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.labels import LabelSpace
from mim_perception.inference.ort_backend import cpu_session
from mim_perception.nets import build_mim, build_model
from mim_perception.nets.onnx_import import load_yolox_onnx, select_classes
from mim_perception.nets.postprocess import det_boxes
from mim_perception.nets.yolox import YoloxDetSeg

L = LabelSpace.load()


class _RawHead(torch.nn.Module):
    """YOLOX's ONNX output: 1×A×(5+C) raw reg, sigmoid objectness and class probabilities, levels concatenated."""

    def __init__(self, m: YoloxDetSeg) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.m.det_head.raw(self.m.neck(*self.m.backbone(x)[1:]))
        return torch.cat([torch.cat([r[:, :4], r[:, 4:].sigmoid()], 1).flatten(2) for r in raw], 2).transpose(1, 2)


def _export_raw(m: YoloxDetSeg, path: Path, hw: tuple[int, int] = (64, 96)) -> Path:
    torch.onnx.export(_RawHead(m.eval()), (torch.zeros(1, 3, *hw),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output"])
    return path


def test_box_convention_equals_the_yolox_decode() -> None:
    torch.manual_seed(0)
    m = YoloxDetSeg(3, 4).eval()
    x = torch.randint(0, 255, (1, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        out = m(x)
        raw = m.det_head.raw(m.features(x)[1])
    pts, strides = m.points(64, 96)
    ours = det_boxes(out["det"], pts)[0]
    r = torch.cat([t.flatten(2) for t in raw], 2)[0].T                          # A×(5+C)
    cell = pts / strides[:, None] - 0.5                                          # integer cell index
    centre, wh = (r[:, :2] + cell) * strides[:, None], torch.exp(r[:, 2:4]) * strides[:, None]
    torch.testing.assert_close(ours, torch.cat([centre - wh / 2, centre + wh / 2], 1), atol=1e-4, rtol=1e-5)
    assert out["seg"].shape == (1, 4, 16, 24) and out["embed"].shape == (1, 256)


def test_weights_round_trip_through_an_exported_graph(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = YoloxDetSeg(80, len(L.segmentation))
    onnx = _export_raw(src, tmp_path / "y.onnx")
    got = load_yolox_onnx(onnx, len(L.segmentation))
    for k, v in src.state_dict().items():
        if not k.startswith("seg_head."):
            torch.testing.assert_close(got.state_dict()[k], v)
    stack = select_classes(got, list(L.detection))
    w = stack.det_head.cls_preds[0].weight
    torch.testing.assert_close(w[L.det_index("car")], got.det_head.cls_preds[0].weight[2])    # COCO car row
    assert float(stack.det_head.cls_preds[0].bias[L.det_index("traffic_cone")].detach()) < -10          # silent until trained
    model = build_model("yolox_nano", len(L.detection), len(L.segmentation))
    with pytest.raises(ModelLoadError, match="convolutions"):
        torch.onnx.export(torch.nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 8, 8),), str(tmp_path / "c.onnx"), dynamo=False)
        load_yolox_onnx(tmp_path / "c.onnx", 10)
    assert isinstance(model, YoloxDetSeg)


def test_mim_on_the_yolox_backbone_masks_and_reconstructs() -> None:
    torch.manual_seed(0)
    mae = build_mim("yolox_nano")
    x = torch.randint(0, 255, (2, 3, 64, 96), dtype=torch.uint8)
    loss, pred, mask = mae(x)
    assert torch.isfinite(loss) and pred.shape == (2, 3, 64, 96) and mask.shape == (2, 1, 2, 3)
    loss.backward()
    assert mae.backbone.stem.conv.weight.grad is not None


def test_real_teacher_imports_with_onnx_runtime_parity(realdata: Path) -> None:
    import cv2

    path = realdata / "teachers" / "yolox_nano_coco.onnx"
    m = load_yolox_onnx(path, len(L.segmentation)).eval()
    img = cv2.resize(cv2.imread(str(realdata / "kitti" / "image_2" / "000010.jpg")), (416, 416))
    x = img.transpose(2, 0, 1)[None].copy()
    with torch.no_grad():
        ours = _RawHead(m)(torch.from_numpy(x).float()).numpy()
    ref = cpu_session(path, 2).run(None, {"images": x.astype(np.float32)})[0]
    assert np.abs(ours - ref).max() < 2e-4


def test_real_teachers_pseudo_labels_find_kitti_cars(realdata: Path, tmp_path: Path) -> None:
    import json

    from mim_perception.core.config import config_dir
    from mim_perception.core.tracking.association import iou_matrix
    from mim_perception.evaluation.real_frames import KittiFilter, kitti_ground_truth
    from mim_perception.inference.external import import_model
    from mim_perception.training.pseudo_label import PseudoLabelConfig, pseudo_label
    from mim_perception.training.real_sources import KittiSource

    cmap = config_dir() / "class_maps" / "coco_to_driving.yaml"
    import_model(realdata / "teachers" / "yolox_nano_coco.onnx", tmp_path / "y", "yolox", classes="coco", class_map=cmap)
    import_model(realdata / "teachers" / "nanodet_m_416_coco.onnx", tmp_path / "n", "nanodet", classes="coco", class_map=cmap)
    out = tmp_path / "pl.json"
    pseudo_label(f"kitti:{realdata / 'kitti'}:10-10", [tmp_path / "y", tmp_path / "n"], out, PseudoLabelConfig())
    doc = json.loads(out.read_text())
    assert len(doc["info"]["teachers"]) == 2 and all(len(t["sha256"]) == 64 for t in doc["info"]["teachers"])
    cars = np.array([a["bbox"] for a in doc["annotations"] if a["category_id"] == L.det_index("car") + 1
                     and not a["iscrowd"]]).reshape(-1, 4)
    cars[:, 2:] += cars[:, :2]
    g = kitti_ground_truth(KittiSource(realdata / "kitti", (10, 10)), 0, L, KittiFilter())   # moderate cars
    gt = g["boxes"][g["labels"] == L.det_index("car")]
    assert len(gt) >= 4 and (iou_matrix(gt, cars).max(1) >= 0.5).mean() >= 0.6   # 3 of 5 at the default thresholds
