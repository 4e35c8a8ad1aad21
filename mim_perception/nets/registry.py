"""Build backbones, detection+segmentation models and masked autoencoders by name.

    build_model("convnext_atto", num_classes=6, num_seg_classes=10)   # DetSegModel
    build_mim("convnext_atto")                                          # MaskedAutoencoder on the same backbone
    available_models()

A model name is its backbone name; the MIM backbone's state_dict loads strictly into ``DetSegModel.backbone``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mim_perception.nets.convnext import CONVNEXT_SIZES, Backbone, ConvNeXt
from mim_perception.nets.mim import MaskedAutoencoder
from mim_perception.nets.model import DetSegBase, DetSegModel, Normalize
from mim_perception.nets.resnet import RESNET_SIZES, ResNet
from mim_perception.nets.yolox import RAW_MEAN, RAW_STD, CSPDarknetNano, YoloxDetSeg


@dataclass(frozen=True)
class ModelSpec:
    backbone: Callable[[], Backbone]
    neck_width: int           # FPN/PAN channels
    head_convs: int           # depthwise-separable convs per det branch
    decoder_dim: int          # MIM decoder width


def _convnext(size: str, cpu: bool = False) -> Callable[[], Backbone]:
    dims, depths = CONVNEXT_SIZES[size]
    # CPU variant: tanh-GELU and no GRN (bench/bench_nets.py: small element-wise ops dominate ORT time on 2 cores)
    return lambda: ConvNeXt(dims, depths, gelu="tanh" if cpu else "none", grn=not cpu)


def _resnet(size: str) -> Callable[[], Backbone]:
    widths, depths = RESNET_SIZES[size]
    return lambda: ResNet(widths, depths)


MODELS: dict[str, ModelSpec] = {
    "convnext_atto": ModelSpec(_convnext("atto"), 64, 2, 256),
    "convnext_atto_cpu": ModelSpec(_convnext("atto", cpu=True), 64, 2, 256),
    "convnext_femto": ModelSpec(_convnext("femto"), 64, 2, 256),
    "convnext_pico": ModelSpec(_convnext("pico"), 96, 2, 384),
    "resnet18": ModelSpec(_resnet("resnet18"), 64, 2, 256),
    # the real-camera model: YOLOX-nano's layout (COCO weights importable, nets/onnx_import.py) + a seg head;
    # its own PAFPN and YOLOX head (neck_width / head_convs unused), raw 0..255 input
    "yolox_nano": ModelSpec(CSPDarknetNano, 64, 2, 256),
    # tests and smoke runs only: a few tens of thousands of parameters
    "convnext_smoke": ModelSpec(_convnext("smoke"), 16, 1, 32),
    "resnet_smoke": ModelSpec(_resnet("resnet_smoke"), 16, 1, 32),
}


def available_models() -> list[str]:
    return sorted(MODELS)


def _spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {available_models()}") from None


def build_backbone(name: str) -> Backbone:
    return _spec(name).backbone()


def build_model(name: str, num_classes: int, num_seg_classes: int) -> DetSegBase:
    if num_classes < 1 or num_seg_classes < 1:
        raise ValueError(f"need at least one class, got num_classes={num_classes}, num_seg_classes={num_seg_classes}")
    spec = _spec(name)
    if name == "yolox_nano":
        return YoloxDetSeg(num_classes, num_seg_classes, name=name)
    return DetSegModel(spec.backbone(), num_classes, num_seg_classes, spec.neck_width, spec.head_convs, name=name)


def build_mim(name: str, mask_ratio: float = 0.6) -> MaskedAutoencoder:
    spec = _spec(name)
    norm = Normalize(RAW_MEAN, RAW_STD) if name == "yolox_nano" else Normalize()   # what the det model's backbone sees
    return MaskedAutoencoder(spec.backbone(), mask_ratio=mask_ratio, decoder_dim=spec.decoder_dim, normalize=norm)
