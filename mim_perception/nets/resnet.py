"""ResNet-18-style backbone with the same SparK contract as ConvNeXt (an alternative bench/bench_nets.py measures as fast in ORT).

Masked forward re-masks after the stem and after every residual block (dense emulation of sparse conv). Unlike
SparK's sparse BatchNorm, BN statistics here include the zeroed positions, so masked pretraining of this backbone
is approximate; ConvNeXt (LayerNorm) is the backbone meant for MIM.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from mim_perception.nets.convnext import Backbone, apply_mask, upsample_mask


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn2.weight)  # zero-init residual: each block starts as identity
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:      # B×Cin×H×W -> B×Cout×H/s×W/s
        y = self.relu(self.bn1(self.conv1(x)))
        m = upsample_mask(mask, y)                                            # patch mask at the output resolution
        y = self.bn2(self.conv2(apply_mask(y, m)))
        return apply_mask(self.relu(y + self.down(x)), m)


class ResNet(Backbone):
    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512), depths: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"ResNet needs 4 stages, got widths={widths} depths={depths}")
        self.channels = list(widths)
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))               # /4
        cins = (widths[0], *widths[:-1])
        self.stages = nn.ModuleList(
            nn.ModuleList(BasicBlock(cins[i] if j == 0 else widths[i], widths[i], 2 if (i > 0 and j == 0) else 1)
                          for j in range(depths[i])) for i in range(4))
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:   # x B×3×H×W normalised float
        x = self.stem(x)                                                         # B×C0×H/4×W/4
        x = apply_mask(x, upsample_mask(mask, x))
        outs = []
        for stage in self.stages:
            for blk in cast(nn.ModuleList, stage):
                x = blk(x, mask)
            outs.append(x)
        return outs                                          # [C2 /4, C3 /8, C4 /16, C5 /32]


RESNET_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "resnet18": ((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet_smoke": ((8, 16, 32, 64), (1, 1, 1, 1)),   # tests and smoke runs only
}
