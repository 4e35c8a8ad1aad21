"""ConvNeXt-V2 backbone (Woo et al. 2023) with the SparK/FCMAE backbone contract and masked (sparse) forward.

Contract: ``downsample_ratios == (4, 8, 16, 32)``, ``channels`` = per-stage widths, ``forward(x, mask=None)`` takes a
normalised float image B×3×H×W (H, W divisible by 32) and returns the four stage outputs [C2, C3, C4, C5].

Masked forward (FCMAE): ``mask`` B×1×(H/32)×(W/32) bool, True = visible. Sparse convolution is emulated densely, as
SparK does: the mask is upsampled to each resolution and multiplied in after the stem, after every depthwise conv,
before GRN (so GRN's global statistics only see visible positions, exactly as on a sparse tensor) and after every
block/downsample. With an all-True mask the output equals the unmasked forward exactly (multiplication by 1).

CPU variant (``gelu="tanh"``, ``grn=False``): bench/bench_nets.py measured ~40 % of ORT time in small element-wise ops (GRN,
exact erf-GELU, LayerNorm) on a 2-core CPU; tanh-GELU and no GRN trade a little accuracy for fewer/cheaper ops.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Backbone(nn.Module):
    """Base class of every backbone (ConvNeXt, ResNet): the SparK hierarchical contract."""

    downsample_ratios: tuple[int, ...] = (4, 8, 16, 32)
    channels: list[int]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:  # pragma: no cover - interface
        raise NotImplementedError


def upsample_mask(mask: Tensor | None, like: Tensor) -> Tensor | None:
    """B×1×h×w bool -> B×1×H×W float at ``like``'s resolution (nearest: every mask cell is a square patch)."""
    if mask is None:
        return None
    h, w = like.shape[-2:]
    scale = h // mask.shape[-2]
    if scale * mask.shape[-2] != h or scale * mask.shape[-1] != w:
        raise ValueError(f"mask {tuple(mask.shape)} does not tile a {h}×{w} feature map")
    m = mask.to(like.dtype)
    return m.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3) if scale > 1 else m


def apply_mask(x: Tensor, m: Tensor | None) -> Tensor:
    return x if m is None else x * m


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of a B×C×H×W map (permute so ORT sees one fused LayerNormalization op)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)                                                 # B×H×W×C
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt-V2) on channels-last B×H×W×C; gamma = beta = 0 at init -> identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: Tensor) -> Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)     # B×1×1×C  spatial L2 per channel
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)                      # B×1×1×C  relative to channel mean
        return self.gamma * (x * nx) + self.beta + x


class Block(nn.Module):
    """dw7×7 -> LN -> Linear(4C) -> GELU -> [GRN] -> Linear(C) -> residual (+ stochastic depth)."""

    def __init__(self, dim: int, gelu: str, grn: bool, drop_path: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU(approximate=gelu)
        self.grn = GRN(4 * dim) if grn else nn.Identity()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = drop_path

    def forward(self, x: Tensor, m: Tensor | None = None) -> Tensor:     # x B×C×H×W, m B×1×H×W or None
        y = apply_mask(self.dwconv(x), m).permute(0, 2, 3, 1)               # B×H×W×C
        y = self.act(self.pwconv1(self.norm(y)))                            # B×H×W×4C
        if m is not None:
            y = y * m.permute(0, 2, 3, 1)                                    # masked rows must not enter GRN's norm
        y = self.pwconv2(self.grn(y)).permute(0, 3, 1, 2)                    # B×C×H×W
        if self.training and self.drop_path > 0:                              # per-sample stochastic depth
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= self.drop_path
            y = y * keep.to(y.dtype) / (1 - self.drop_path)
        return apply_mask(x + y, m)


class ConvNeXt(Backbone):
    def __init__(self, dims: tuple[int, ...] = (40, 80, 160, 320), depths: tuple[int, ...] = (2, 2, 6, 2),
                 gelu: str = "none", grn: bool = True, drop_path: float = 0.0) -> None:
        super().__init__()
        if len(dims) != 4 or len(depths) != 4:
            raise ValueError(f"ConvNeXt needs 4 stages, got dims={dims} depths={depths}")
        self.channels = list(dims)
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=1e-6))
        self.downsamples = nn.ModuleList(
            nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2)) for i in range(1, 4))
        rates = torch.linspace(0, drop_path, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList(
            nn.ModuleList(Block(dims[i], gelu, grn, rates[starts[i] + j]) for j in range(depths[i])) for i in range(4))
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> list[Tensor]:   # x B×3×H×W normalised float
        outs = []
        for i, stage in enumerate(self.stages):
            x = self.stem(x) if i == 0 else self.downsamples[i - 1](x)            # B×C_i×H/s_i×W/s_i
            m = upsample_mask(mask, x)                                            # B×1×H/s_i×W/s_i
            x = apply_mask(x, m)
            for blk in cast(nn.ModuleList, stage):
                x = blk(x, m)
            outs.append(x)
        return outs                                          # [C2 /4, C3 /8, C4 /16, C5 /32]


# name -> (dims, depths); the ConvNeXt-V2 paper sizes (backbone only, no classifier: atto 3.4 M parameters)
CONVNEXT_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "atto": ((40, 80, 160, 320), (2, 2, 6, 2)),
    "femto": ((48, 96, 192, 384), (2, 2, 6, 2)),
    "pico": ((64, 128, 256, 512), (2, 2, 6, 2)),
    "smoke": ((8, 16, 32, 64), (1, 1, 1, 1)),   # tests and smoke runs only
}
