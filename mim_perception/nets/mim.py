"""Masked image modelling (FCMAE / SparK style) for the hierarchical backbone.

x uint8 B×3×H×W -> normalise -> random mask over 32-px patches (ratio 0.6, True = visible) -> backbone(x, mask)
(masked pixels zeroed at every stage: sparse conv emulated densely) -> C5 B×C×h×w (h = H/32) -> 1×1 proj to D,
mask token at masked cells -> light ConvNeXt decoder -> 1×1 conv to 32·32·3 values per cell = one patch of pixels.
Loss: MSE against per-patch normalised pixels (MAE's norm_pix_loss), on masked patches only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mim_perception.nets.convnext import Backbone, Block
from mim_perception.nets.model import Normalize


def random_mask(b: int, h: int, w: int, ratio: float, device: torch.device | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """B×1×h×w bool, True = visible; exactly round(h·w·(1 - ratio)) visible cells per image (at least one)."""
    n = h * w
    keep = max(1, round(n * (1 - ratio)))
    order = torch.rand(b, n, generator=generator, device=device).argsort(1)          # B×L random permutation
    mask = torch.zeros(b, n, dtype=torch.bool, device=device).scatter_(1, order[:, :keep], True)
    return mask.view(b, 1, h, w)


def patch_norm(target: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """B×(p·p·3)×h×w patches -> (per-patch standardised patches, mean B×1×h×w, std B×1×h×w)."""
    mean = target.mean(1, keepdim=True)
    std = (target.var(1, keepdim=True, unbiased=False) + eps).sqrt()
    return (target - mean) / std, mean, std


def patch_loss(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """pred/target B×P×h×w (P = p·p·3), mask B×1×h×w (True = visible) -> (mean over masked patches, per-image B)."""
    err = (pred - target).pow(2).mean(1)                                                # B×h×w  per-patch MSE
    hidden = (~mask[:, 0]).to(err.dtype)                                                 # B×h×w
    per_image = (err * hidden).sum((1, 2)) / hidden.sum((1, 2)).clamp(min=1)
    return (err * hidden).sum() / hidden.sum().clamp(min=1), per_image


class MaskedAutoencoder(nn.Module):
    def __init__(self, backbone: Backbone, mask_ratio: float = 0.6, patch: int = 32, decoder_dim: int = 256,
                 decoder_depth: int = 1, normalize: Normalize | None = None) -> None:
        super().__init__()
        if patch != backbone.downsample_ratios[-1]:
            raise ValueError(f"patch {patch} must equal the backbone's last stride {backbone.downsample_ratios[-1]}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask ratio {mask_ratio} outside [0, 1)")
        self.mask_ratio, self.patch = mask_ratio, patch
        self.normalize = normalize or Normalize(multiple=patch)
        self.backbone = backbone
        self.proj = nn.Conv2d(backbone.channels[-1], decoder_dim, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, decoder_dim, 1, 1))
        self.decoder = nn.Sequential(*(Block(decoder_dim, "none", True, 0.0) for _ in range(decoder_depth)))
        self.pred = nn.Conv2d(decoder_dim, patch * patch * 3, 1)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def _predict(self, x: Tensor, mask: Tensor | None, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        xn = self.normalize(x)                                                          # B×3×H×W
        b, _, hh, ww = xn.shape
        if mask is None:
            mask = random_mask(b, hh // self.patch, ww // self.patch, self.mask_ratio, xn.device, generator)
        c5 = self.backbone(xn, mask)[-1]                                               # B×C×h×w (masked cells 0)
        y = torch.where(mask, self.proj(c5), self.mask_token.to(c5.dtype))             # B×D×h×w
        pred = self.pred(self.decoder(y))                                               # B×(p·p·3)×h×w
        return pred, F.pixel_unshuffle(xn, self.patch), mask                           # pred, target patches, mask

    def forward(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor, Tensor]:
        """x uint8 B×3×H×W -> (loss scalar, pred B×3×H×W in per-patch normalised pixel space, mask B×1×h×w True=visible)."""
        pred, target, mask = self._predict(x, mask, generator)
        loss, _ = patch_loss(pred, patch_norm(target)[0], mask)
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError(f"non-finite MIM loss {float(loss)}")
        return loss, F.pixel_shuffle(pred, self.patch), mask

    @torch.no_grad()
    def score(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Per-image reconstruction error B (masked patches): an OOD signal. Pass a seeded generator for repeatability."""
        pred, target, mask = self._predict(x, mask, generator)
        return patch_loss(pred, patch_norm(target)[0], mask)[1]

    @torch.no_grad()
    def reconstruct(self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """x uint8 B×3×H×W -> uint8 B×3×H×W: visible patches from x, masked ones predicted.

        The prediction is per-patch normalised, so each masked patch is de-normalised with the true patch mean/std
        (as MAE's visualisations do): the picture shows structure the model recovered, not the patch's colour level.
        """
        pred, target, mask = self._predict(x, mask, generator)
        _, mean, std = patch_norm(target)
        patches = torch.where(mask, target, pred * std + mean)                          # B×(p·p·3)×h×w normalised px
        img = F.pixel_shuffle(patches, self.patch) * self.normalize.std + self.normalize.mean
        return img.round().clamp(0, 255).to(torch.uint8)
