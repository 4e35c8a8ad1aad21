"""Light FPN + PAN neck: [C2..C5] -> P2..P5 (top-down, for segmentation) and N3..N5 (bottom-up, for detection).

Every conv is depthwise-separable with BN + ReLU: at 384×640 a dense 3×3 64->64 conv at stride 4 costs ~0.57 GMAC,
the separable one ~0.07; BN folds into the conv and ReLU fuses with it in ONNX Runtime (SiLU would not).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True) if act else nn.Identity())


class DWConv(nn.Sequential):
    """Depthwise k×k (stride s) + pointwise 1×1, each with BN + ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(ConvBNAct(cin, cin, k, stride, groups=cin), ConvBNAct(cin, cout, 1))


def up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class FPN(nn.Module):
    """[C2 /4, C3 /8, C4 /16, C5 /32] (backbone widths) -> (P2..P5, N3..N5), every map ``width`` channels."""

    def __init__(self, in_channels: list[int], width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.lateral = nn.ModuleList(ConvBNAct(c, width, 1) for c in in_channels)
        self.smooth = nn.ModuleList(DWConv(width, width) for _ in range(3))   # P2, P3, P4 after the top-down sum
        self.down = nn.ModuleList(DWConv(width, width, stride=2) for _ in range(2))   # N3 -> /16, N4 -> /32
        self.fuse = nn.ModuleList(DWConv(width, width) for _ in range(2))    # N4, N5 after the bottom-up sum

    def forward(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]          # 4 × B×W×H/s×W/s
        p = [lat[3]]                                                                  # P5
        for i in (2, 1, 0):                                                           # P4, P3, P2
            p.insert(0, self.smooth[i](lat[i] + up2(p[0])))
        n = [p[1]]                                                                    # N3 = P3
        for i in range(2):                                                            # N4, N5
            n.append(self.fuse[i](p[i + 2] + self.down[i](n[-1])))
        return p, n                                          # [P2, P3, P4, P5], [N3, N4, N5]
