"""Detection + segmentation training loss. Everything is vectorised over B×G×A (images × padded gts × anchor points).

Assignment: task-aligned (TAL, TOOD/YOLOv8) with a centre prior. For every gt, candidates are the points inside the box
and within ``radius``·stride of its centre (FCOS centre sampling), plus the stride-8 point nearest the centre (so a
box smaller than a cell still gets one positive). Among candidates the top-k by the alignment metric
``t = s^alpha · IoU^beta`` (s = predicted joint score of the gt class, IoU of the predicted box) become positives; a
point claimed by several gts goes to the one its prediction overlaps most.

Losses (YOLOX-style split, GFL quality): quality logit -> quality focal loss against IoU on positives, 0 elsewhere (all
points); class logits -> BCE on positives only (one-hot); boxes -> GIoU on positives; seg -> CE + dice, 255 ignored.
Detection terms are normalised by the number of positives in the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mim_perception.core.labels import IGNORE
from mim_perception.nets.heads import anchor_points
from mim_perception.nets.postprocess import det_boxes, det_scores


@dataclass(frozen=True)
class LossConfig:
    topk: int = 10            # positives per gt (TAL)
    alpha: float = 1.0        # score exponent of the alignment metric
    beta: float = 6.0         # IoU exponent of the alignment metric
    radius: float = 2.5       # centre prior, in strides
    qfl_beta: float = 2.0     # quality focal loss modulating exponent
    w_quality: float = 1.0
    w_cls: float = 1.0
    w_box: float = 2.0
    w_seg: float = 1.0
    w_dice: float = 0.5       # relative to the seg CE
    # YOLOX's own targets (models started from YOLOX weights keep their calibration): quality/objectness -> 1 on
    # positives (BCE) instead of the IoU (QFL), class -> IoU·one-hot instead of one-hot
    yolox_targets: bool = False
    # segmentation classes no training label shows (e.g. lane_marking when every seg label comes from a dataset whose
    # road includes the markings): kept out of the softmax, as export leaves them out of the argmax, so a set label
    # like {road, lane_marking} teaches road instead of leaking probability into a class nothing defines
    seg_exclude: tuple[int, ...] = ()


class Assignment(NamedTuple):
    fg: Tensor        # B×A bool  positive points
    gt_idx: Tensor    # B×A long  index into the padded gts (meaningful where fg)
    iou: Tensor       # B×A float IoU(pred, assigned gt) where fg, else 0 (detached)


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """List of {"boxes" N×4, "labels" N} -> (B×G×4 float, B×G long, B×G bool valid), G = max N (at least 1).

    Degenerate boxes (zero width or height) are not valid: they would only add noise positives.
    """
    g = max([1] + [len(t["labels"]) for t in targets])
    boxes = torch.zeros(len(targets), g, 4, device=device)
    labels = torch.zeros(len(targets), g, dtype=torch.long, device=device)
    valid = torch.zeros(len(targets), g, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        boxes[i, :n] = t["boxes"].to(device, torch.float32).reshape(n, 4)
        labels[i, :n] = t["labels"].to(device, torch.long)
        valid[i, :n] = True
    valid &= (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    return boxes, labels, valid


def pairwise_iou(gt: Tensor, pred: Tensor) -> Tensor:
    """gt B×G×4, pred B×A×4 (xyxy) -> B×G×A IoU."""
    g, p = gt[:, :, None], pred[:, None]
    inter = (torch.minimum(g[..., 2:], p[..., 2:]) - torch.maximum(g[..., :2], p[..., :2])).clamp(min=0).prod(-1)
    area_g = (g[..., 2:] - g[..., :2]).clamp(min=0).prod(-1)
    area_p = (p[..., 2:] - p[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_g + area_p - inter).clamp(min=1e-9)


def giou_loss(a: Tensor, b: Tensor) -> Tensor:
    """N×4, N×4 xyxy -> N (1 - GIoU)."""
    inter = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    union = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1) + (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1) - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    iou = inter / union.clamp(min=1e-9)
    return 1 - iou + (hull - union) / hull.clamp(min=1e-9)


@torch.no_grad()
def assign(pred_boxes: Tensor, scores: Tensor, points: Tensor, strides: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
           gt_valid: Tensor, size: tuple[int, int], cfg: LossConfig) -> Assignment:
    """pred_boxes B×A×4, scores B×A×C, points A×2, strides A, gts B×G×{4, -, -}, input (H, W) -> Assignment."""
    b, g, _ = gt_boxes.shape
    a = points.shape[0]
    px, py = points[:, 0], points[:, 1]                                                      # A
    x1, y1, x2, y2 = (gt_boxes[..., i, None] for i in range(4))                              # B×G×1 each
    in_box = (px > x1) & (px < x2) & (py > y1) & (py < y2)                                   # B×G×A
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, cfg.radius * strides
    cand = in_box & ((px - cx).abs() < r) & ((py - cy).abs() < r)
    # the finest-level point nearest each gt centre is always a candidate (boxes smaller than a stride-8 cell)
    s0 = float(strides[0])
    h0, w0 = size[0] // int(s0), size[1] // int(s0)                                        # finest grid, row-major first
    ix = (cx.squeeze(-1) / s0).floor().clamp(0, w0 - 1).long()
    iy = (cy.squeeze(-1) / s0).floor().clamp(0, h0 - 1).long()
    cand.scatter_(2, (iy * w0 + ix).unsqueeze(-1), True)
    cand &= gt_valid.unsqueeze(-1)

    iou = pairwise_iou(gt_boxes, pred_boxes)                                                  # B×G×A
    s = scores.transpose(1, 2).gather(1, gt_labels.unsqueeze(-1).expand(b, g, a))            # B×G×A
    metric = s.pow(cfg.alpha) * iou.pow(cfg.beta) * cand
    top = metric.topk(min(cfg.topk, a), dim=-1).indices                                       # B×G×k
    sel = torch.zeros_like(cand).scatter_(2, top, True) & cand                                # B×G×A
    gt_idx = torch.where(sel, iou, -1.0).argmax(1)                                            # B×A  max-IoU gt
    fg = sel.any(1)
    return Assignment(fg, gt_idx, iou.gather(1, gt_idx.unsqueeze(1)).squeeze(1) * fg)


def quality_focal_loss(logit: Tensor, target: Tensor, beta: float) -> Tensor:
    """GFL's QFL: BCE against a soft target, modulated by |sigmoid - target|^beta. Elementwise."""
    return F.binary_cross_entropy_with_logits(logit, target, reduction="none") * (logit.sigmoid() - target).abs().pow(beta)


def seg_loss(logits: Tensor, seg: Tensor, num_classes: int, sets: Tensor | None = None,
             exclude: tuple[int, ...] = ()) -> tuple[Tensor, Tensor]:
    """logits B×S×h×w (h = H/4), seg B×H×W uint8 (255 ignore) -> (CE, dice) scalars; zeros when nothing is labelled.

    ``sets`` B×S×S bool (partial labels): a pixel labelled v may be any class c with sets[b, v, c]; its CE is then
    -log Σ_c p_c over that set (the model is not taught that a lane marking is road because a dataset calls it
    road), and such pixels are left out of the dice term. ``exclude``: classes left out of the softmax (and out of
    every set); a label that is one of them is an error."""
    target = seg.long()
    valid = target != IGNORE
    if not bool(valid.any()):
        zero = logits.sum() * 0
        return zero, zero
    if int(target[valid].max()) >= num_classes:
        raise ValueError(f"segmentation label {int(target[valid].max())} >= {num_classes} classes")
    up = F.interpolate(logits, size=seg.shape[-2:], mode="bilinear", align_corners=False)     # B×S×H×W
    safe = torch.where(valid, target, 0)
    exact = valid
    if exclude:
        if sets is None and bool(torch.isin(target[valid], torch.tensor(exclude, device=seg.device)).any()):
            raise ValueError(f"segmentation labels include excluded classes {exclude}")
        up = up.index_fill(1, torch.tensor(exclude, device=up.device), float("-inf"))
        if sets is None:   # the set formulation below handles the exclusion for every pixel alike
            sets = torch.eye(num_classes, dtype=torch.bool, device=seg.device).expand(len(seg), -1, -1)
        sets = sets.clone()
        sets[:, :, list(exclude)] = False
    if sets is None:
        ce = F.cross_entropy(up, target, ignore_index=IGNORE)
    else:
        allowed = sets[torch.arange(len(seg), device=seg.device)[:, None, None], safe].permute(0, 3, 1, 2)  # B×S×H×W
        if exclude and bool((~allowed.any(1))[valid].any()):
            raise ValueError(f"a segmentation label allows only excluded classes {exclude}")
        logp = up.log_softmax(1)
        nll = -torch.logsumexp(logp.masked_fill(~allowed, float("-inf")), 1)                 # B×H×W
        ce = nll[valid].mean()
        exact = valid & (allowed.sum(1) == 1)
    prob = up.softmax(1) * exact.unsqueeze(1)                                                 # B×S×H×W
    # an exact pixel's one class: its label, or with sets the one class its set still allows
    onehot = (F.one_hot(safe, num_classes).permute(0, 3, 1, 2) if sets is None else allowed) * exact.unsqueeze(1)
    inter = (prob * onehot).sum((0, 2, 3))                                                    # S
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    present = onehot.sum((0, 2, 3)) > 0
    dice = (1 - (2 * inter + 1) / (denom + 1))[present].mean() if bool(present.any()) else logits.sum() * 0
    return ce, dice


def partial_labels(targets: list[dict[str, Tensor]], num_classes: int, num_seg: int, device: torch.device
                   ) -> tuple[Tensor, Tensor | None]:
    """-> (B×C bool classes each image annotates, B×S×S seg label sets or None when every image is exact)."""
    det = torch.stack([t["det_classes"].to(device) if "det_classes" in t else torch.ones(num_classes, dtype=torch.bool,
                       device=device) for t in targets])
    if not any("seg_sets" in t for t in targets):
        return det, None
    eye = torch.eye(num_seg, dtype=torch.bool, device=device)
    return det, torch.stack([t["seg_sets"].to(device) if "seg_sets" in t else eye for t in targets])


def in_ignore_regions(points: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
    """points A×2, per-image optional "ignore_boxes" M×4 -> B×A bool (point inside any of its image's regions)."""
    out = torch.zeros(len(targets), points.shape[0], dtype=torch.bool, device=points.device)
    for i, t in enumerate(targets):
        r = t.get("ignore_boxes")
        if r is not None and len(r):
            r = r.to(points.device)
            px, py = points[:, 0:1], points[:, 1:2]                                           # A×1
            out[i] = ((px > r[:, 0]) & (px < r[:, 2]) & (py > r[:, 1]) & (py < r[:, 3])).any(1)
    return out


def detseg_loss(out: dict[str, Tensor], targets: list[dict[str, Tensor]], seg: Tensor | None, strides: tuple[int, ...],
                num_classes: int, cfg: LossConfig | None = None) -> dict[str, Tensor]:
    """Model output dict + batch targets -> {"quality", "cls", "box", "seg_ce", "seg_dice", "num_fg", "total"}."""
    cfg = cfg or LossConfig()
    det = out["det"]                                                                          # B×A×(5+C)
    h, w = out["seg"].shape[-2] * 4, out["seg"].shape[-1] * 4
    points, pstrides = anchor_points(h, w, strides, det.device)                               # A×2, A
    if det.shape[1] != points.shape[0] or det.shape[2] != 5 + num_classes or len(targets) != det.shape[0]:
        raise ValueError(f"det {tuple(det.shape)} does not match {len(targets)} images of {h}×{w}, {num_classes} classes")
    gt_boxes, gt_labels, gt_valid = pad_targets(targets, det.device)
    if bool(((gt_labels < 0) | (gt_labels >= num_classes))[gt_valid].any()):
        raise ValueError(f"detection label outside [0, {num_classes})")

    annotated, seg_sets = partial_labels(targets, num_classes, out["seg"].shape[1], det.device)   # B×C, B×S×S
    pred = det_boxes(det, points)                                                            # B×A×4
    asg = assign(pred.detach(), det_scores(det.detach()), points, pstrides, gt_boxes, gt_labels, gt_valid, (h, w), cfg)
    num_fg = asg.fg.sum().clamp(min=1).to(det.dtype)
    # Points of frames without box labels, and unassigned points in ignore regions, are neither positive nor negative.
    counted = annotated.any(1, keepdim=True) & ~(in_ignore_regions(points, targets) & ~asg.fg)   # B×A
    if cfg.yolox_targets:
        q = F.binary_cross_entropy_with_logits(det[..., 4], asg.fg.to(det.dtype), reduction="none")
    else:
        q = quality_focal_loss(det[..., 4], asg.iou, cfg.qfl_beta)
    quality = (q * counted).sum() / num_fg
    bidx = torch.arange(det.shape[0], device=det.device).unsqueeze(1).expand_as(asg.gt_idx)    # B×A
    lab = gt_labels[bidx, asg.gt_idx][asg.fg]                                                 # P
    onehot = F.one_hot(lab, num_classes).to(det.dtype)
    if cfg.yolox_targets:
        onehot = onehot * asg.iou[asg.fg].unsqueeze(1)
    cls = (F.binary_cross_entropy_with_logits(det[..., 5:][asg.fg], onehot, reduction="none")
           * annotated[bidx][asg.fg]).sum() / num_fg          # a class the frame does not annotate is not a negative
    box = giou_loss(pred[asg.fg], gt_boxes[bidx, asg.gt_idx][asg.fg]).sum() / num_fg
    if seg is None:
        ce = dice = out["seg"].sum() * 0
    else:
        ce, dice = seg_loss(out["seg"], seg.to(out["seg"].device), out["seg"].shape[1], seg_sets, cfg.seg_exclude)
    total = cfg.w_quality * quality + cfg.w_cls * cls + cfg.w_box * box + cfg.w_seg * (ce + cfg.w_dice * dice)
    losses = {"quality": quality, "cls": cls, "box": box, "seg_ce": ce, "seg_dice": dice, "total": total}
    if not bool(torch.isfinite(total)):
        parts = {k: float(v) for k, v in losses.items()}
        raise FloatingPointError(f"non-finite detection/segmentation loss: {parts}")
    losses["num_fg"] = asg.fg.sum().to(det.dtype).detach()
    return losses
