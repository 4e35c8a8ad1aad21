"""Torch modules: backbones (ConvNeXt-V2, ResNet), FPN/PAN, det + seg heads, losses, decoding, MIM pretraining.

Importing this package imports torch; ROS-free core code must not import it (inference backends load it lazily).
"""

from mim_perception.nets.mim import MaskedAutoencoder
from mim_perception.nets.model import DetSegModel, ExportModule
from mim_perception.nets.registry import available_models, build_backbone, build_mim, build_model

__all__ = ["DetSegModel", "ExportModule", "MaskedAutoencoder", "available_models", "build_backbone", "build_mim",
           "build_model"]
