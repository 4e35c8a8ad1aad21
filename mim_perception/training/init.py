"""Where training starts: published detector weights (a YOLOX ONNX graph), a MIM checkpoint, or a previous model.

    --init yolox_nano.onnx            every detector weight (backbone, PAFPN, head; the COCO rows of the stack's
                                      classes), segmentation head fresh (nets/onnx_import.py)
    --init runs/mim/mim.pt            the backbone only (a `pretrain` checkpoint also holds its decoder)
    --init runs/ft/best.pt            the whole model

Several ``--init`` apply in order, later ones overriding what they hold (``--init teacher.onnx --init mim.pt``: the
teacher's neck and head on the MIM-adapted backbone).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.labels import LabelSpace
from mim_perception.nets.onnx_import import load_yolox_onnx, select_classes
from mim_perception.training.checkpoint import load_into, load_state

MIM_ONLY = ("proj.", "mask_token", "decoder.", "pred.", "normalize.")   # parts of a MaskedAutoencoder, not of a detector


def initial_state(path: Path, labels: LabelSpace) -> dict[str, torch.Tensor]:
    """State dict from a YOLOX ONNX graph (.onnx) or a checkpoint (.pt)."""
    if path.suffix == ".onnx":

        coco = load_yolox_onnx(path, len(labels.segmentation))
        return {k: v for k, v in select_classes(coco, list(labels.detection)).state_dict().items()
                if not k.startswith("seg_head.")}
    return load_state(path)


def apply_init(model: nn.Module, paths: list[str], labels: LabelSpace, *, backbone_only: bool = False) -> list[str]:
    """Load each init in order into ``model`` (a det+seg model, or a MaskedAutoencoder with ``backbone_only``);
    -> one line per init saying what it set. Keys a source holds must all fit; what it lacks stays as it was."""
    done = []
    for p in paths:
        state = initial_state(Path(p), labels)
        backbone = model.get_submodule("backbone")
        if backbone_only or not any(k.startswith(("neck.", "det_head.")) for k in state):
            sub = {k: v for k, v in state.items() if k.startswith("backbone.")}
            if not sub:
                raise ModelLoadError(f"{p} holds no backbone weights")
            load_into(backbone, sub, prefix="backbone.", source=p)
            done.append(f"{p}: backbone ({len(sub)} tensors)")
            continue
        sub = {k: v for k, v in state.items() if not k.startswith(MIM_ONLY)}
        result = model.load_state_dict(sub, strict=False)
        if result.unexpected_keys:
            raise ModelLoadError(f"{p} does not match the model: unexpected {result.unexpected_keys[:8]}")
        parts = sorted({k.split(".")[0] for k in sub})
        done.append(f"{p}: {', '.join(parts)} ({len(sub)} tensors)")
    return done
