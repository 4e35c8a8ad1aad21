"""Anchor-free detection head (shared across strides 8/16/32, decoupled cls / box+quality) and the semantic head.

Detection output per anchor point (cell centre), levels concatenated, row-major inside a level:
    det[b, a] = [l, t, r, b  (pixels, >= 0: softplus(s_level · x) · stride),  quality logit,  C class logits]
The conv weights are shared across levels (FCOS/GFL) but each level keeps its own BatchNorm (EfficientDet): one BN
shared by three resolutions would train on per-level batch statistics and evaluate on a blend of them.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mim_perception.nets.fpn import DWConv

DET_STRIDES = (8, 16, 32)
PRIOR_PROB = 0.01   # initial foreground probability (RetinaNet): keeps the focal loss from exploding at step 0


def anchor_points(h: int, w: int, strides: tuple[int, ...] = DET_STRIDES, device: torch.device | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Cell centres of an h×w input: (A×2 float32 xy pixels, A float32 strides), level by level, row-major."""
    pts, strs = [], []
    for s in strides:
        ys = (torch.arange(h // s, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w // s, device=device, dtype=torch.float32) + 0.5) * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")                         # (h/s)×(w/s)
        pts.append(torch.stack((gx, gy), -1).reshape(-1, 2))
        strs.append(torch.full((pts[-1].shape[0],), float(s), device=device))
    return torch.cat(pts), torch.cat(strs)


class SharedDWConv(nn.Module):
    """DWConv whose conv weights are shared by all levels, with one BatchNorm pair per level."""

    def __init__(self, width: int, levels: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(width, width, 3, 1, 1, groups=width, bias=False)
        self.pw = nn.Conv2d(width, width, 1, bias=False)
        self.bn_dw = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(levels))
        self.bn_pw = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(levels))

    def forward(self, x: Tensor, level: int) -> Tensor:
        x = F.relu(self.bn_dw[level](self.dw(x)))
        return F.relu(self.bn_pw[level](self.pw(x)))


class DetHead(nn.Module):
    def __init__(self, width: int, num_classes: int, convs: int = 2, strides: tuple[int, ...] = DET_STRIDES) -> None:
        super().__init__()
        self.strides = strides
        self.num_classes = num_classes
        n = len(strides)
        self.cls_convs = nn.ModuleList(SharedDWConv(width, n) for _ in range(convs))
        self.reg_convs = nn.ModuleList(SharedDWConv(width, n) for _ in range(convs))
        self.cls_pred = nn.Conv2d(width, num_classes, 1)
        self.box_pred = nn.Conv2d(width, 4, 1)
        self.quality_pred = nn.Conv2d(width, 1, 1)
        self.scales = nn.Parameter(torch.ones(n))            # FCOS per-level scale of the shared box regressor
        bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        for conv in (self.cls_pred, self.quality_pred):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.constant_(cast(Tensor, conv.bias), bias)
        nn.init.normal_(self.box_pred.weight, std=0.01)
        nn.init.zeros_(cast(Tensor, self.box_pred.bias))

    def forward(self, feats: list[Tensor]) -> Tensor:         # feats [N3, N4, N5], each B×W×H/s×W/s
        outs = []
        for lvl, (x, s) in enumerate(zip(feats, self.strides, strict=True)):
            c, r = x, x
            for cc, rc in zip(self.cls_convs, self.reg_convs, strict=True):
                c, r = cc(c, lvl), rc(r, lvl)
            box = F.softplus(self.box_pred(r) * self.scales[lvl]) * s           # B×4×h×w  ltrb pixels >= 0
            outs.append(torch.cat((box, self.quality_pred(r), self.cls_pred(c)), 1).flatten(2))   # B×(5+C)×hw
        return torch.cat(outs, 2).transpose(1, 2)            # B×A×(4+1+C)


class SegHead(nn.Module):
    """P2..P5 -> sum at stride 4 (bilinear up) -> 2 DWConvs -> S logits at H/4×W/4 (Panoptic-FPN style, summed)."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(DWConv(width, width), DWConv(width, width))
        self.pred = nn.Conv2d(width, num_classes, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:         # [P2 /4, P3 /8, P4 /16, P5 /32], each B×W×…
        x = feats[0]
        for i, f in enumerate(feats[1:], start=1):
            x = x + F.interpolate(f, scale_factor=float(2**i), mode="bilinear", align_corners=False)
        return self.pred(self.convs(x))                       # B×S×H/4×W/4
