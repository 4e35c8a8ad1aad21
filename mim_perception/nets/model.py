"""DetSegModel: uint8 BGR image -> backbone -> FPN/PAN -> {det, seg, embed} in one forward pass.

Normalisation lives inside the model (bench/bench_imageconv.py: uint8 CHW preprocessing is 5× cheaper than numpy float
normalisation), so the runtime only resizes. ``export_forward`` is the static ONNX graph: fixed top-k candidates
before NMS (class-aware NMS runs outside the graph, ``core.postprocess.select_detections``), seg argmax, embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mim_perception.core.model_io import OUTPUT_NAMES
from mim_perception.nets.convnext import Backbone
from mim_perception.nets.fpn import FPN
from mim_perception.nets.heads import DET_STRIDES, DetHead, SegHead, anchor_points
from mim_perception.nets.losses import LossConfig, detseg_loss
from mim_perception.nets.postprocess import topk_candidates

# ImageNet statistics in BGR order (OpenCV images), 0..255 scale
MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)


class Normalize(nn.Module):
    """uint8 (or float 0..255) B×3×H×W BGR -> float32 standardised; checks the size contract once per call."""

    mean: Tensor   # 1×3×1×1 buffers
    std: Tensor

    def __init__(self, mean: tuple[float, ...] = MEAN_BGR, std: tuple[float, ...] = STD_BGR, multiple: int = 32) -> None:
        super().__init__()
        self.multiple = multiple
        # constants, not learnt: non-persistent so checkpoints never carry (or conflict on) them
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected B×3×H×W BGR, got {tuple(x.shape)}")
        if x.shape[2] % self.multiple or x.shape[3] % self.multiple:
            raise ValueError(f"H, W must be multiples of {self.multiple}, got {tuple(x.shape[2:])}")
        if not x.dtype.is_floating_point and x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 or float input, got {x.dtype}")
        return (x.float() - self.mean) / self.std


class DetSegBase(nn.Module):
    """What every det+seg model shares: ``forward`` -> {"det" B×A×(5+C), "seg" B×S×H/4×W/4, "embed" B×D} in the
    stack's detection convention (nets/heads.py), and from it the anchor points, the training loss and the static
    export graph. Subclasses set the attributes below in ``__init__``."""

    name: str
    num_classes: int
    num_seg_classes: int
    export_topk: int
    strides: tuple[int, ...]
    embed_dim: int
    loss_cfg: LossConfig

    def points(self, h: int, w: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """Anchor points of an h×w input: (A×2 xy centres float32, A strides)."""
        return anchor_points(h, w, self.strides, device)

    def loss(self, out: dict[str, Tensor], targets: list[dict[str, Tensor]], seg: Tensor | None = None) -> dict[str, Tensor]:
        """Training loss dict incl. "total"; see nets/losses.py. Raises FloatingPointError on a non-finite loss."""
        return detseg_loss(out, targets, seg, self.strides, self.num_classes, self.loss_cfg)

    def export_forward(self, x: Tensor, seg_untrained: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Static graph for ONNX: (boxes B×K×4 xyxy px, scores B×K, classes B×K int64, seg B×H/4×W/4 uint8, embed B×D).

        K = ``export_topk`` (capped at A·C) highest sigmoid(cls)·sigmoid(quality) over (point, class) pairs, pre-NMS.
        ``seg_untrained`` (S bool): classes no training label ever showed are left out of the argmax (their logits
        carry no information: CamVid's "road" may be a lane marking, so a model trained on it may pick lane_marking for
        all road pixels, equally right by its loss and wrong for every user).
        """
        out = self(x)
        pts, _ = self.points(x.shape[2], x.shape[3], x.device)
        boxes, scores, classes = topk_candidates(out["det"], pts, self.export_topk, (x.shape[2], x.shape[3]))
        logits = out["seg"]
        if seg_untrained is not None:
            logits = logits.masked_fill(seg_untrained.view(1, -1, 1, 1), float("-inf"))
        seg = logits.argmax(1).to(torch.uint8)
        return boxes, scores, classes, seg, out["embed"]


class DetSegModel(DetSegBase):
    def __init__(self, backbone: Backbone, num_classes: int, num_seg_classes: int, neck_width: int = 64,
                 head_convs: int = 2, export_topk: int = 300, name: str = "") -> None:
        super().__init__()
        self.name = name                                      # registry name, recorded in manifests
        if tuple(backbone.downsample_ratios) != (4, 8, 16, 32):
            raise ValueError(f"backbone downsample ratios {backbone.downsample_ratios} != (4, 8, 16, 32)")
        self.num_classes, self.num_seg_classes, self.export_topk = num_classes, num_seg_classes, export_topk
        self.strides = DET_STRIDES
        self.normalize = Normalize()
        self.backbone = backbone
        self.neck = FPN(backbone.channels, neck_width)
        self.det_head = DetHead(neck_width, num_classes, head_convs, DET_STRIDES)
        self.seg_head = SegHead(neck_width, num_seg_classes)
        self.embed_dim = backbone.channels[-1]
        self.loss_cfg = LossConfig()                          # training code may dataclasses.replace() it

    def forward(self, x: Tensor) -> dict[str, Tensor]:        # x B×3×H×W uint8 BGR
        feats = self.backbone(self.normalize(x))             # [C2 /4 .. C5 /32]
        p, n = self.neck(feats)                              # [P2..P5], [N3..N5]  B×W×…
        return {"det": self.det_head(n),                     # B×A×(4+1+C)
                "seg": self.seg_head(p),                     # B×S×H/4×W/4
                "embed": feats[-1].mean(dim=(2, 3))}         # B×D  pooled C5 (drift monitoring)


class ExportModule(nn.Module):
    """Wraps ``DetSegModel.export_forward`` as ``forward`` for torch.onnx.export."""

    output_names = OUTPUT_NAMES

    seg_untrained: Tensor | None

    def __init__(self, model: DetSegBase, seg_untrained: list[int] | tuple[int, ...] = ()) -> None:
        super().__init__()
        self.model = model
        mask = torch.zeros(model.num_seg_classes, dtype=torch.bool)
        mask[list(seg_untrained)] = True
        self.register_buffer("seg_untrained", mask if len(seg_untrained) else None, persistent=False)
        self.train(model.training)                             # export in the wrapped model's mode (eval)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return self.model.export_forward(x, self.seg_untrained)
