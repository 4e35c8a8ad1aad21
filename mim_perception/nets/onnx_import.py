"""Start from published detector weights: copy a YOLOX ONNX graph's convolutions into :class:`YoloxDetSeg`.

An exported YOLOX graph holds each convolution (batch norm folded in) in the order the network ran; our module runs
the same convolutions in the same order. Both orders are read (ONNX node order; module execution order from
forward hooks on one dummy pass), every shape is checked, and the result is verified by the caller against ONNX
Runtime (``tools``/tests: max abs difference of the decoded outputs). The segmentation head is not in the graph and
keeps its initialisation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mim_perception.core.errors import ModelLoadError
from mim_perception.nets.yolox import YoloxDetSeg

COCO_ROWS_FOR_STACK = {"car": 2, "truck": 7, "bus": 5, "pedestrian": 0, "cyclist": 1}   # cyclist <- COCO bicycle
NEVER_FIRE_BIAS = -12.0   # a class no real source labels (traffic_cone): sigmoid ≈ 6e-6, below any threshold


def onnx_convs(path: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) of every Conv node of an ONNX graph, in node order."""
    try:
        import onnx  # noqa: PLC0415 -- onnx (model extra): a clear error without it
        from onnx import numpy_helper  # noqa: PLC0415 -- as above
    except ImportError as e:   # pragma: no cover - onnx is a training dependency
        raise ModelLoadError("importing ONNX weights needs the onnx package") from e
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:   # protobuf decode errors come in several types
        raise ModelLoadError(f"{path}: not a readable ONNX model ({e})") from e
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in inits:
            raise ModelLoadError(f"{path}: Conv {node.name} has a computed weight; not an exported YOLOX graph")
        out.append((inits[node.input[1]], inits[node.input[2]] if len(node.input) > 2 else None))
    return out


def execution_order(model: YoloxDetSeg, hw: tuple[int, int] = (64, 64)) -> list[nn.Conv2d]:
    """The detector's Conv2d modules (segmentation head excluded) in the order one forward pass runs them."""
    order: list[nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod))
             for part in (model.backbone, model.neck, model.det_head) for m in part.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.det_head(model.neck(*model.backbone(torch.zeros(1, 3, *hw))[1:]))
    finally:
        for h in hooks:
            h.remove()
    return order


def load_yolox_onnx(path: Path | str, num_seg_classes: int, num_classes: int = 80) -> YoloxDetSeg:
    """A YoloxDetSeg holding the ONNX graph's detector weights (``num_classes`` must match its class count)."""
    path = Path(path)
    model = YoloxDetSeg(num_classes, num_seg_classes)
    convs, modules = onnx_convs(path), execution_order(model)
    if len(convs) != len(modules):
        raise ModelLoadError(f"{path}: {len(convs)} convolutions, YOLOX-nano has {len(modules)}; not a YOLOX-nano graph")
    with torch.no_grad():
        for k, ((w, b), mod) in enumerate(zip(convs, modules, strict=True)):
            if tuple(w.shape) != tuple(mod.weight.shape) or b is None or mod.bias is None or b.shape != mod.bias.shape:
                raise ModelLoadError(f"{path}: conv {k} is {tuple(w.shape)}, the module expects {tuple(mod.weight.shape)}")
            mod.weight.copy_(torch.from_numpy(w.copy()))
            mod.bias.copy_(torch.from_numpy(b.copy()))
    return model


def select_classes(coco: YoloxDetSeg, class_names: list[str], rows: dict[str, int] | None = None) -> YoloxDetSeg:
    """A copy of a COCO-80 model whose class outputs are ``class_names``, each initialised from its COCO row;
    a class without a row is given a bias that keeps it silent until trained."""
    rows = COCO_ROWS_FOR_STACK if rows is None else rows
    model = YoloxDetSeg(len(class_names), coco.num_seg_classes)
    state = coco.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("det_head.cls_preds."):
            value.copy_(state[key])
            continue
        src = state[key]
        for j, name in enumerate(class_names):
            if name in rows:
                value[j] = src[rows[name]]
            elif key.endswith("bias"):
                value[j] = NEVER_FIRE_BIAS
            else:
                value[j] = 0.0
    return model
