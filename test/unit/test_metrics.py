"""Detection mAP (faster-coco-eval) on known cases and the segmentation confusion-matrix IoU on hand-made masks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mim_perception.core.errors import ConfigError
from mim_perception.training.metrics import SegMeter, credit_label_sets, evaluate_detections

NAMES = ("car", "pedestrian", "cone")


def _scene(rng: np.random.Generator, n_images: int = 6) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truth with classes 0 and 1 only (class 2 never appears)."""
    gts = []
    for _ in range(n_images):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 400, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        gts.append((np.hstack([xy, xy + wh]).astype(np.float32), rng.integers(0, 2, n)))
    return gts


def _perfect(gts):
    return [(b, np.linspace(0.9, 0.5, len(b)), lab) for b, lab in gts]


def test_perfect_predictions_score_one_and_absent_class_is_nan() -> None:
    gts = _scene(np.random.default_rng(0))
    r = evaluate_detections(_perfect(gts), gts, NAMES)
    assert r["mAP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0)
    assert r["per_class_AP"]["car"] == pytest.approx(1.0) and r["per_class_AP50"]["pedestrian"] == pytest.approx(1.0)
    assert math.isnan(r["per_class_AP"]["cone"]) and r["num_gt"]["cone"] == 0
    assert r["num_gt"]["car"] + r["num_gt"]["pedestrian"] == sum(len(b) for b, _ in gts)


def test_shifted_boxes_score_lower_and_wrong_class_scores_zero() -> None:
    gts = _scene(np.random.default_rng(1))
    shifted = [(b + np.array([8, 8, 8, 8], np.float32), s, lab) for b, s, lab in _perfect(gts)]
    r = evaluate_detections(shifted, gts, NAMES)
    assert 0.0 < r["mAP"] < 0.9 and r["AP50"] > r["mAP"]
    wrong = [(b, s, 1 - lab) for b, s, lab in _perfect(gts)]
    assert evaluate_detections(wrong, gts, NAMES)["mAP"] == pytest.approx(0.0)


def test_empty_predictions_zero_and_no_ground_truth_nan() -> None:
    gts = _scene(np.random.default_rng(2))
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))] * len(gts)
    r = evaluate_detections(empty, gts, NAMES)
    assert r["mAP"] == 0.0 and r["per_class_AP50"]["car"] == 0.0
    no_gt = [(np.zeros((0, 4)), np.zeros(0, np.int64))] * len(gts)
    r = evaluate_detections(_perfect(gts), no_gt, NAMES)
    assert math.isnan(r["mAP"]) and all(math.isnan(v) for v in r["per_class_AP"].values())


def test_false_positives_on_empty_images_lower_precision_and_dict_targets_work() -> None:
    gts = _scene(np.random.default_rng(3))
    preds = _perfect(gts)
    # Two extra images without ground truth, each with a confident false positive.
    fp = (np.array([[10, 10, 60, 60]], np.float32), np.array([0.99]), np.array([0]))
    none = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)}
    r = evaluate_detections(preds + [fp, fp], [{"boxes": b, "labels": lab} for b, lab in gts] + [none, none], NAMES)
    assert r["per_class_AP"]["car"] < 1.0 and r["per_class_AP"]["pedestrian"] == pytest.approx(1.0)


def test_bad_inputs_raise_config_error() -> None:
    gts = _scene(np.random.default_rng(4), 2)
    with pytest.raises(ConfigError, match="predictions for"):
        evaluate_detections(_perfect(gts)[:1], gts, NAMES)
    bad = [(b, s, lab + 5) for b, s, lab in _perfect(gts)]
    with pytest.raises(ConfigError, match="label outside"):
        evaluate_detections(bad, gts, NAMES)


def test_seg_meter_hand_made_masks() -> None:
    target = np.array([[0, 0, 1, 1],
                       [0, 0, 1, 255],
                       [2, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 0],      # the 0 under an ignore pixel must not count
                     [2, 2, 0, 3]], np.uint8)
    m = SegMeter(4, ("a", "b", "c", "d"))
    m.update(pred, target)
    r = m.compute()
    # class 0: tp 3, fp 1 (target 2 -> 0), fn 1 (target 0 -> 1): 3/5; class 1: tp 3, fp 1, fn 0: 3/4;
    # class 2: tp 2, fn 1: 2/3; class 3: absent from target and (outside ignore) never predicted: NaN.
    assert r["per_class_IoU"]["a"] == pytest.approx(3 / 5)
    assert r["per_class_IoU"]["b"] == pytest.approx(3 / 4)
    assert r["per_class_IoU"]["c"] == pytest.approx(2 / 3)
    assert math.isnan(r["per_class_IoU"]["d"])
    assert r["mIoU"] == pytest.approx((3 / 5 + 3 / 4 + 2 / 3) / 3)
    assert r["pixel_acc"] == pytest.approx(8 / 10)
    m.update(pred, target)   # accumulation: same ratios, twice the counts
    assert m.compute()["mIoU"] == pytest.approx(r["mIoU"]) and m.confusion.sum() == 20
    m.reset()
    assert math.isnan(m.compute()["mIoU"])


def test_seg_meter_predicted_absent_class_is_zero_and_bad_labels_raise() -> None:
    m = SegMeter(3)
    m.update(np.array([[2, 0]]), np.array([[0, 0]]))
    r = m.compute()
    assert r["per_class_IoU"]["2"] == 0.0 and r["mIoU"] == pytest.approx(0.5)   # only class 0 is present
    with pytest.raises(ConfigError, match="predicted label"):
        m.update(np.array([[3]]), np.array([[0]]))
    with pytest.raises(ConfigError, match="target label"):
        m.update(np.array([[0]]), np.array([[7]]))
    with pytest.raises(ConfigError, match="shape"):
        m.update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_credit_label_sets_counts_a_set_member_as_the_dataset_label() -> None:
    sets = np.eye(4, dtype=bool)
    sets[0, 1] = True                                  # label 0 ("road") may truly be 1 ("lane_marking")
    target = np.array([[0, 0, 2, 255]])
    pred = np.array([[1, 2, 1, 1]])
    assert credit_label_sets(pred, target, sets).tolist() == [[0, 2, 1, 1]]   # only the set member is credited
    assert credit_label_sets(pred, target, None) is pred
