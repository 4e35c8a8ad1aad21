"""Real data sources and partial labels: KITTI label_2 (ignore regions), CamVid mapping (road may be a lane marking),
boxes attached from pseudo-label JSON, partial labels reaching only their head, fusion of two teachers, and the
real-frame evaluation against an independent AP computation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mim_perception.core.errors import DatasetError
from mim_perception.core.labels import LabelSpace
from mim_perception.core.types import Detections
from mim_perception.evaluation.real_frames import KittiFilter, kitti_ground_truth, score_camvid, score_kitti
from mim_perception.nets.losses import detseg_loss, seg_loss
from mim_perception.training.augment import Letterbox, hflip
from mim_perception.training.data import collate
from mim_perception.training.pseudo_label import fuse
from mim_perception.training.real_sources import CamVidSource, KittiSource, VideoSource, WithBoxes, parse_kitti_label

L = LabelSpace.load()
CAR, PED = L.det_index("car"), L.det_index("pedestrian")


def _kitti(root: Path, rows: list[str], name: str = "000000") -> Path:
    (root / "image_2").mkdir(parents=True, exist_ok=True)
    (root / "label_2").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "image_2" / f"{name}.png"), np.full((100, 300, 3), 90, np.uint8))
    (root / "label_2" / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


ROWS = ["Car 0.00 0 0 10 20 60 70 0 0 0 0 0 0 0",           # 50 px tall: counted
        "Van 0.00 1 0 100 40 130 60 0 0 0 0 0 0 0",         # 20 px tall: car, but below the moderate height
        "Pedestrian 0.80 0 0 200 10 220 80 0 0 0 0 0 0 0",  # truncated 0.8: ignored for evaluation
        "DontCare -1 -1 -10 250 0 300 50 -1 -1 -1 -1000 -1000 -1000 -10",
        "Tram 0.00 0 0 150 0 180 40 0 0 0 0 0 0 0"]


def test_kitti_boxes_ignore_regions_and_annotated_classes(tmp_path: Path) -> None:
    src = KittiSource(_kitti(tmp_path, ROWS))
    s = src[0]
    assert s.labels.tolist() == [CAR, CAR, PED]                      # Van -> car
    np.testing.assert_allclose(s.ignore_boxes, [[250, 0, 300, 50], [150, 0, 180, 40]])   # DontCare, Tram
    assert s.det_classes is not None and not s.det_classes[L.det_index("bus")] and s.det_classes[CAR]
    assert not s.det_classes[L.det_index("traffic_cone")]
    with pytest.raises(DatasetError, match="000001.txt:1"):
        (tmp_path / "label_2" / "000001.txt").write_text("Car 0 0\n")
        parse_kitti_label(tmp_path / "label_2" / "000001.txt")


def test_ignore_regions_follow_the_geometry(tmp_path: Path) -> None:
    s = KittiSource(_kitti(tmp_path, ROWS))[0]
    flipped = hflip(s)
    np.testing.assert_allclose(flipped.ignore_boxes[0], [0, 0, 50, 50])
    lb = Letterbox((64, 96))(s)                                       # 300×100 -> scale 0.32
    np.testing.assert_allclose(lb.ignore_boxes[0], np.array([250, 0, 300, 50]) * 0.32 + [0, 16, 0, 16], atol=1e-4)


def _camvid(root: Path) -> Path:
    for sub in ("images", "labels"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "train" / "images" / "0001TP_000001.png"), np.zeros((4, 6, 3), np.uint8))
    lab = np.array([[3, 3, 0, 0, 8, 11]] * 4, np.uint8)             # road, sky, car, void
    cv2.imwrite(str(root / "train" / "labels" / "0001TP_000001.png"), lab)
    return root


def test_camvid_mapping_sets_and_no_box_labels(tmp_path: Path) -> None:
    src = CamVidSource(_camvid(tmp_path), "train")
    s = src[0]
    road, lane, sky = L.seg_index("road"), L.seg_index("lane_marking"), L.seg_index("sky")
    assert s.seg[0].tolist() == [road, road, sky, sky, L.seg_index("vehicle"), 255]
    assert s.seg_sets is not None and s.seg_sets[road, lane] and s.seg_sets[road, L.seg_index("crosswalk")]
    assert not s.seg_sets[sky, road] and s.det_classes is not None and not s.det_classes.any()
    assert src.episodes[0] == "0001TP" and src.keys[0] == "train/images/0001TP_000001.png"


def test_partial_labels_reach_only_their_head() -> None:
    torch.manual_seed(0)
    c, s_cls = len(L.detection), len(L.segmentation)
    h = w = 32
    n_pts = (h // 8) * (w // 8) + (h // 16) * (w // 16) + (h // 32) * (w // 32)
    det = torch.randn(1, n_pts, 5 + c, requires_grad=True)
    seg_logits = torch.randn(1, s_cls, h // 4, w // 4, requires_grad=True)
    out = {"det": det, "seg": seg_logits}
    seg = torch.full((1, h, w), 255, dtype=torch.uint8)
    seg[0, :, :16] = L.seg_index("road")
    # masks only: no detection loss at all, whatever the boxes say
    no_boxes = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                 "det_classes": torch.zeros(c, dtype=torch.bool)}]
    losses = detseg_loss(out, no_boxes, seg, (8, 16, 32), c)
    assert float(losses["quality"].detach()) == 0 and float(losses["cls"].detach()) == 0
    assert float(losses["seg_ce"].detach()) > 0
    # boxes only: no segmentation loss
    boxes = [{"boxes": torch.tensor([[4.0, 4, 20, 20]]), "labels": torch.tensor([CAR])}]
    losses = detseg_loss(out, boxes, torch.full((1, h, w), 255, dtype=torch.uint8), (8, 16, 32), c)
    assert float(losses["seg_ce"].detach()) == 0 and float(losses["quality"].detach()) > 0
    # a class the frame does not annotate gets no gradient from the class loss
    part = [dict(boxes[0], det_classes=torch.tensor([i != L.det_index("traffic_cone") for i in range(c)]))]
    losses = detseg_loss(out, part, None, (8, 16, 32), c)
    (g,) = torch.autograd.grad(losses["cls"], det)
    assert g[..., 5 + L.det_index("traffic_cone")].abs().sum() == 0 and g[..., 5 + CAR].abs().sum() > 0


def test_seg_sets_do_not_teach_lane_markings_to_be_road() -> None:
    road, lane = L.seg_index("road"), L.seg_index("lane_marking")
    logits = torch.full((1, len(L.segmentation), 2, 2), -5.0)
    logits[:, lane] = 5.0                                            # confidently "lane marking"
    seg = torch.full((1, 8, 8), road, dtype=torch.uint8)
    sets = torch.eye(len(L.segmentation), dtype=torch.bool)[None].clone()
    exact_ce, _ = seg_loss(logits, seg, len(L.segmentation))
    sets[0, road, lane] = True
    partial_ce, _ = seg_loss(logits, seg, len(L.segmentation), sets)
    assert float(exact_ce) > 9 and float(partial_ce) < 1e-3


def test_with_boxes_attaches_pseudo_labels_and_crowd_regions(tmp_path: Path) -> None:
    src = KittiSource(_kitti(tmp_path, ROWS))
    doc = {"info": {"source": f"kitti:{tmp_path}"}, "images": [{"id": 1, "file_name": src.keys[0]}],
           "categories": [{"id": CAR + 1, "name": "car"}, {"id": L.det_index("bus") + 1, "name": "bus"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": L.det_index("bus") + 1, "bbox": [5, 5, 20, 30]},
                           {"id": 2, "image_id": 1, "category_id": CAR + 1, "bbox": [0, 0, 5, 5]},     # GT wins
                           {"id": 3, "image_id": 1, "category_id": CAR + 1, "bbox": [70, 0, 5, 5], "iscrowd": 1}]}
    (tmp_path / "pl.json").write_text(json.dumps(doc))
    s = WithBoxes(src, tmp_path / "pl.json")[0]
    assert s.labels.tolist() == [CAR, CAR, PED, L.det_index("bus")]
    assert s.det_classes is not None and s.det_classes[L.det_index("bus")]
    assert [70, 0, 75, 5] in s.ignore_boxes.tolist()
    images, targets, _ = collate([s])
    assert targets[0]["det_classes"].dtype == torch.bool and len(targets[0]["ignore_boxes"]) == 3
    bad = dict(doc, images=[{"id": 1, "file_name": "nope.png"}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match="not items"):
        WithBoxes(src, tmp_path / "bad.json")


def test_video_source_keys(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for k in range(6):
        vw.write(np.full((48, 64, 3), k * 30, np.uint8))
    vw.release()
    src = VideoSource(path, stride=2)
    assert len(src) == 3 and src.keys == ["v.avi#000000", "v.avi#000002", "v.avi#000004"]
    assert src[1].image.shape == (48, 64, 3) and not src.labelled


def test_fusion_averages_agreeing_teachers_and_halves_a_lone_box() -> None:
    a = Detections.create([[0, 0, 10, 10], [50, 50, 60, 60]], [0.8, 0.6], [CAR, CAR])
    b = Detections.create([[1, 1, 11, 11]], [0.4], [CAR])
    f = fuse([a, b], 0.55)
    order = np.argsort(-f.scores)
    np.testing.assert_allclose(f.scores[order], [0.6, 0.3])
    np.testing.assert_allclose(f.boxes[order][0], np.array([0, 0, 10, 10]) * 2 / 3 + np.array([1, 1, 11, 11]) / 3)


def test_kitti_score_equals_an_independent_ap(tmp_path: Path) -> None:
    rows = ["Car 0.00 0 0 10 20 60 70 0 0 0 0 0 0 0", "Car 0.00 0 0 100 20 160 80 0 0 0 0 0 0 0",
            "DontCare -1 -1 -10 250 0 300 50 -1 -1 -1 -1000 -1000 -1000 -10"]
    src = KittiSource(_kitti(tmp_path, rows))
    gt = kitti_ground_truth(src, 0, L, KittiFilter())
    assert gt["labels"].tolist() == [CAR, CAR] and gt["ignore_labels"].tolist() == [-1]

    def detect(_: np.ndarray) -> Detections:
        return Detections.create([[10, 20, 60, 70],      # TP 0.9
                                  [200, 20, 240, 80],    # FP 0.8
                                  [255, 5, 295, 45],     # inside DontCare: not counted
                                  [100, 20, 160, 80],    # TP 0.7
                                  [0, 0, 10, 10]],       # 10 px tall: below the moderate height, not counted
                                 [0.9, 0.8, 0.75, 0.7, 0.95], [CAR] * 5)

    # precision 1 up to recall 0.5, then 2/3: COCO's 101-point interpolation gives (51·1 + 50·2/3) / 101
    r = score_kitti(detect, src, L)
    assert r["AP50"]["car"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-6)
    assert r["num_gt"]["car"] == 2


def test_camvid_score_counts_lane_markings_as_road(tmp_path: Path) -> None:
    src = CamVidSource(_camvid(tmp_path), "train")
    pred = src[0].seg.copy()
    pred[pred == 255] = 0
    pred[0, 0] = L.seg_index("lane_marking")                       # on a "road" pixel: fine for CamVid
    r = score_camvid(lambda _: pred, src, L)
    assert r["IoU"]["road"] == 1.0 and r["IoU"]["sky"] == 1.0 and np.isnan(r["IoU"]["person"])
    assert r["mIoU"] == 1.0                                          # classes absent from the split are left out
