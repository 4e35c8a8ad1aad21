"""Decoding + class-aware NMS on hand-made tensors; the training decode and the runtime selection must agree."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mim_perception.core.postprocess import select_detections  # noqa: E402
from mim_perception.nets.heads import anchor_points  # noqa: E402
from mim_perception.nets.postprocess import batched_nms, decode, nms, topk_candidates  # noqa: E402

H, W, C = 64, 96, 3
A = sum((H // s) * (W // s) for s in (8, 16, 32))


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def hand_made() -> dict[str, torch.Tensor]:
    """Everything background except: point (20,12) car box, point (28,12) overlapping car box, and a truck on it."""
    det = torch.full((1, A, 5 + C), -10.0)
    det[..., :4] = 4.0
    pts, _ = anchor_points(H, W)
    i = int(((pts - torch.tensor([20.0, 12.0])).abs().sum(1) == 0).nonzero())     # stride-8 point at (20, 12)
    j = i + 1                                                                      # (28, 12)
    det[0, i, :4] = torch.tensor([10.0, 8.0, 10.0, 8.0])                            # box 10,4,30,20
    det[0, j, :4] = torch.tensor([17.0, 8.0, 3.0, 8.0])                             # box 11,4,31,20 (IoU 0.9)
    det[0, i, 4] = det[0, j, 4] = 10.0                                               # quality ~1
    det[0, i, 5 + 0] = logit(0.9)                                                    # car 0.9
    det[0, j, 5 + 0] = logit(0.8)                                                    # car 0.8 -> suppressed
    det[0, j, 5 + 1] = logit(0.7)                                                    # truck 0.7 -> kept (other class)
    return {"det": det, "seg": torch.zeros(1, 2, H // 4, W // 4)}


def test_decode_hand_made() -> None:
    (boxes, scores, labels), = decode(hand_made(), score_thr=0.5, topk=50, nms_iou=0.5)
    assert labels.tolist() == [0, 1]
    assert torch.allclose(scores, torch.tensor([0.9, 0.7]), atol=1e-3)
    assert torch.allclose(boxes, torch.tensor([[10.0, 4, 30, 20], [11, 4, 31, 20]]))
    (_, _, labels2), = decode(hand_made(), score_thr=0.75, topk=50, nms_iou=0.5)
    assert labels2.tolist() == [0]
    (_, _, labels3), = decode(hand_made(), score_thr=0.5, topk=50, nms_iou=0.95)   # IoU 0.9 < 0.95: both cars stay
    assert labels3.tolist() == [0, 0, 1]


def test_nms_greedy_and_class_offset() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0, 1]), 0.5).tolist() == [1, 2, 3]
    assert batched_nms(boxes[:0], scores[:0], torch.tensor([], dtype=torch.long), 0.5).numel() == 0


def test_boxes_are_clipped_to_the_image() -> None:
    det = torch.zeros(1, A, 5 + C)
    det[..., :4] = 1000.0
    pts, _ = anchor_points(H, W)
    boxes, _, _ = topk_candidates(det, pts, 10, (H, W))
    assert boxes[0, 0].tolist() == [0.0, 0.0, float(W), float(H)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_training_decode_and_runtime_selection_agree(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    det = torch.randn(2, A, 5 + C, generator=g)
    det[..., :4] = det[..., :4].abs() * 12 + 2                                       # many overlapping boxes
    det[0, :7, 0] = -det[0, :7, 2]                                                   # some degenerate boxes
    out = {"det": det, "seg": torch.zeros(2, 2, H // 4, W // 4)}
    ref = decode(out, score_thr=0.2, topk=200, nms_iou=0.5, max_det=50)
    pts, _ = anchor_points(H, W)
    cand = [t.numpy() for t in topk_candidates(det, pts, 200, (H, W))]
    assert sum(len(r[0]) for r in ref) > 10, "the case must exercise NMS"
    for i, (tb, ts, tl) in enumerate(ref):
        got = select_detections(cand[0][i], cand[1][i], cand[2][i], score_threshold=0.2, nms_iou=0.5, max_detections=50)
        np.testing.assert_allclose(tb.numpy(), got.boxes, atol=1e-5)
        np.testing.assert_allclose(ts.numpy(), got.scores, atol=1e-6)
        np.testing.assert_array_equal(tl.numpy(), got.labels)


def test_threshold_is_inclusive_and_degenerate_boxes_are_dropped_in_both() -> None:
    det = torch.full((1, A, 5 + C), -10.0)
    det[..., :4] = 4.0
    det[0, 0, 4] = 20.0                                   # quality ~1
    det[0, 0, 5] = logit(0.5)                             # score 0.5 exactly at the threshold
    det[0, 1, :4] = torch.tensor([4.0, 4.0, -4.0, 4.0])   # zero width
    det[0, 1, 4], det[0, 1, 5] = 20.0, logit(0.9)
    (b, s, lab), = decode({"det": det, "seg": torch.zeros(1, 2, H // 4, W // 4)}, 0.5, 50, 0.5)
    pts, _ = anchor_points(H, W)
    cand = [t.numpy()[0] for t in topk_candidates(det, pts, 50, (H, W))]
    got = select_detections(*cand, score_threshold=0.5, nms_iou=0.5, max_detections=50)
    assert len(b) == len(got) == 1 and float(s[0]) == pytest.approx(0.5, abs=1e-6) and got.scores[0] == pytest.approx(0.5)


def test_decode_rejects_mismatched_sizes() -> None:
    out = hand_made()
    out["seg"] = torch.zeros(1, 2, 8, 8)
    with pytest.raises(ValueError, match="points"):
        decode(out, 0.5, 10, 0.5)
