"""YOLOX-nano (CSPDarknet-nano + PAFPN + decoupled head) with a segmentation head: the real-camera model.

The layer layout is Megvii YOLOX's (depthwise, width 0.25, depth 0.33) so that the Apache-2.0 COCO weights of
YOLOX-nano load into it (``nets/onnx_import.py``: batch norm arrives folded into the convolutions, hence every
conv carries a bias and no norm layer). Shapes, for an H×W input (multiples of 32):

    x uint8 B×3×H×W BGR 0..255 (YOLOX takes raw pixels: no normalisation)
    stem (Focus)  B×16×H/2     dark2 B×32×H/4     dark3 B×64×H/8     dark4 B×128×H/16    dark5 B×256×H/32
    PAFPN         N3 B×64×H/8  N4 B×128×H/16  N5 B×256×H/32
    head          per level: reg (dx, dy, log w, log h), objectness logit, C class logits
    seg           N3 (up ×2) + dark2 -> 2 DWConvs -> S logits at H/4

The detection output is given in the stack's convention (``nets/heads.py``) so the loss, decode and export of
``DetSegModel`` apply unchanged: det[b, a] = [l, t, r, b px from the cell centre, quality logit, C class logits],
with YOLOX's box (cx = (gx + dx)·s, w = exp(lw)·s) re-expressed around the centre point (gx + 0.5)·s and the
objectness logit as the quality logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mim_perception.nets.convnext import Backbone
from mim_perception.nets.heads import DET_STRIDES
from mim_perception.nets.losses import LossConfig
from mim_perception.nets.model import DetSegBase, Normalize

WIDTHS = (16, 32, 64, 128, 256)      # stem, dark2..dark5 (64·0.25 · 2^k)
HEAD_WIDTH = 64                      # 256·0.25
MAX_LOG_WH = 10.0                    # exp(10)·32 px: no real box is larger; keeps exp finite in early training
RAW_MEAN, RAW_STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)   # YOLOX was trained on raw 0..255 BGR


class Conv(nn.Module):
    """Conv (bias: batch norm folded in) + SiLU. ``BaseConv`` of YOLOX after fusion."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(self.conv(x))


class DWConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__()
        self.dconv = Conv(cin, cin, k, s, groups=cin)
        self.pconv = Conv(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pconv(self.dconv(x))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.conv1, self.conv2, self.add = Conv(c, c, 1), DWConv(c, c, 3), shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.add else y


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        hidden = cout // 2
        self.conv1, self.conv2 = Conv(cin, hidden, 1), Conv(cin, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))
        self.conv3 = Conv(2 * hidden, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.conv1(x), self.conv2(x)   # this order: YOLOX's, which the weight import relies on
        return self.conv3(torch.cat((self.m(a), b), 1))


class SPPBottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = Conv(c, c // 2, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.conv2 = Conv(c // 2 * 4, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [p(x) for p in self.pools], 1))


class CSPDarknetNano(Backbone):
    """-> [dark2 /4, dark3 /8, dark4 /16, dark5 /32]. ``mask`` (MIM): B×1×h×w visible cells (True), applied to the
    input and re-applied after every stage."""

    def __init__(self) -> None:
        super().__init__()
        self.channels = list(WIDTHS[1:])
        c0, c1, c2, c3, c4 = WIDTHS
        self.stem = Conv(12, c0, 3)
        self.dark2 = nn.Sequential(DWConv(c0, c1, 3, 2), CSPLayer(c1, c1, 1))
        self.dark3 = nn.Sequential(DWConv(c1, c2, 3, 2), CSPLayer(c2, c2, 3))
        self.dark4 = nn.Sequential(DWConv(c2, c3, 3, 2), CSPLayer(c3, c3, 3))
        self.dark5 = nn.Sequential(DWConv(c3, c4, 3, 2), SPPBottleneck(c4), CSPLayer(c4, c4, 1, shortcut=False))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        if mask is not None:
            x = x * F.interpolate(mask.to(x.dtype), size=x.shape[-2:], mode="nearest")
        # Focus: space-to-depth, in YOLOX's channel order (top-left, bottom-left, top-right, bottom-right)
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)
        x = self.stem(x)
        feats = []
        for stage in (self.dark2, self.dark3, self.dark4, self.dark5):
            x = stage(x)
            if mask is not None:   # SparK: masked cells stay empty at every scale (sparse conv, emulated densely)
                x = x * F.interpolate(mask.to(x.dtype), size=x.shape[-2:], mode="nearest")
            feats.append(x)
        return feats


class PAFPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        c2, c3, c4 = WIDTHS[2:]
        self.lateral_conv0 = Conv(c4, c3, 1)
        self.C3_p4 = CSPLayer(2 * c3, c3, 1, shortcut=False)
        self.reduce_conv1 = Conv(c3, c2, 1)
        self.C3_p3 = CSPLayer(2 * c2, c2, 1, shortcut=False)
        self.bu_conv2 = DWConv(c2, c2, 3, 2)
        self.C3_n3 = CSPLayer(2 * c2, c3, 1, shortcut=False)
        self.bu_conv1 = DWConv(c3, c3, 3, 2)
        self.C3_n4 = CSPLayer(2 * c3, c4, 1, shortcut=False)

    def forward(self, x3: Tensor, x4: Tensor, x5: Tensor) -> list[Tensor]:
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")   # noqa: E731
        fpn0 = self.lateral_conv0(x5)                                        # c3 /32
        fpn1 = self.reduce_conv1(self.C3_p4(torch.cat((up(fpn0), x4), 1)))    # c2 /16
        n3 = self.C3_p3(torch.cat((up(fpn1), x3), 1))                        # c2 /8
        n4 = self.C3_n3(torch.cat((self.bu_conv2(n3), fpn1), 1))             # c3 /16
        n5 = self.C3_n4(torch.cat((self.bu_conv1(n4), fpn0), 1))             # c4 /32
        return [n3, n4, n5]


class YoloxHead(nn.Module):
    def __init__(self, num_classes: int, in_channels: tuple[int, ...] = WIDTHS[2:]) -> None:
        super().__init__()
        w = HEAD_WIDTH
        self.num_classes = num_classes
        self.stems = nn.ModuleList(Conv(c, w, 1) for c in in_channels)
        self.cls_convs = nn.ModuleList(nn.Sequential(DWConv(w, w), DWConv(w, w)) for _ in in_channels)
        self.reg_convs = nn.ModuleList(nn.Sequential(DWConv(w, w), DWConv(w, w)) for _ in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(w, num_classes, 1) for _ in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(w, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(nn.Conv2d(w, 1, 1) for _ in in_channels)

    def raw(self, feats: list[Tensor]) -> list[Tensor]:
        """-> per level B×(4 + 1 + C)×h×w: (dx, dy, log w, log h), objectness logit, class logits (YOLOX order)."""
        outs = []
        for k, f in enumerate(feats):
            x = self.stems[k](f)
            cls = self.cls_preds[k](self.cls_convs[k](x))
            r = self.reg_convs[k](x)
            outs.append(torch.cat((self.reg_preds[k](r), self.obj_preds[k](r), cls), 1))
        return outs

    def forward(self, feats: list[Tensor], strides: tuple[int, ...] = DET_STRIDES) -> Tensor:
        """-> B×A×(5 + C) in the stack's convention (module docstring)."""
        outs = []
        for raw, s in zip(self.raw(feats), strides, strict=True):
            wh = torch.exp(raw[:, 2:4].clamp(max=MAX_LOG_WH)) * s                # B×2×h×w
            off = (0.5 - raw[:, 0:2]) * s                                        # centre point - box centre
            lt, rb = off + wh / 2, wh / 2 - off
            outs.append(torch.cat((lt, rb, raw[:, 4:]), 1).flatten(2))           # B×(5+C)×hw
        return torch.cat(outs, 2).transpose(1, 2)


class ConvBN(nn.Sequential):
    """Conv + BatchNorm + SiLU for the new segmentation head (the imported detector layers have norms folded in;
    a head trained from scratch on raw-pixel features needs its own)."""

    def __init__(self, cin: int, cout: int, k: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class SegNeck(nn.Module):
    """N3 (/8) upsampled onto dark2 (/4) -> S logits at /4: fine enough for poles and distant cars, one level cheap."""

    def __init__(self, num_classes: int, width: int = 48) -> None:
        super().__init__()
        self.lat = ConvBN(WIDTHS[1], width)
        self.top = ConvBN(WIDTHS[2], width)
        self.convs = nn.Sequential(*(m for _ in range(2) for m in (ConvBN(width, width, 3, width), ConvBN(width, width))))
        self.pred = nn.Conv2d(width, num_classes, 1)

    def forward(self, c2: Tensor, n3: Tensor) -> Tensor:
        x = self.lat(c2) + F.interpolate(self.top(n3), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.pred(self.convs(x))


class YoloxDetSeg(DetSegBase):
    """uint8 BGR -> {"det": B×A×(5+C), "seg": B×S×H/4×W/4, "embed": B×256}; same contract as ``DetSegModel``."""

    def __init__(self, num_classes: int, num_seg_classes: int, export_topk: int = 300, name: str = "yolox_nano") -> None:
        super().__init__()
        self.name = name
        self.num_classes, self.num_seg_classes, self.export_topk = num_classes, num_seg_classes, export_topk
        self.strides = DET_STRIDES
        self.normalize = Normalize(RAW_MEAN, RAW_STD)             # input checks; the values pass through unchanged
        self.backbone = CSPDarknetNano()
        self.neck = PAFPN()
        self.det_head = YoloxHead(num_classes)
        self.seg_head = SegNeck(num_seg_classes)
        self.embed_dim = WIDTHS[-1]
        self.loss_cfg = LossConfig(yolox_targets=True)

    def features(self, x: Tensor, mask: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        feats = self.backbone(self.normalize(x), mask)                # [C2 /4, C3 /8, C4 /16, C5 /32]
        return feats, self.neck(*feats[1:])                            # [N3, N4, N5]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats, n = self.features(x)
        return {"det": self.det_head(n, self.strides),
                "seg": self.seg_head(feats[0], n[0]),
                "embed": feats[-1].mean(dim=(2, 3))}
