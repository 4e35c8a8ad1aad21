"""PyTorch on an NVIDIA GPU: fp16/bf16, channels_last, static shapes, the whole forward + top-k in a CUDA graph.

Eager PyTorch spends most of a small model's GPU time in Python overhead (about 10× for a model of this size on an
H100, as reported to this project; not measured here, no GPU was lent): capturing the forward once in a CUDA graph
and replaying it is meant to remove that. Host frames go
through a pinned buffer with an async copy on a dedicated stream; only the fixed-size top-k, the seg
argmax and the embedding come back. A new batch size (camera count) re-captures once.

NOT RUN on a GPU in this project's CI (no GPU there); the CPU path (``device="cpu"``, eager) is tested.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.pipeline import ModelOutputs
from mim_perception.inference.manifest import Manifest, load_manifest
from mim_perception.nets import build_model
from mim_perception.nets.checkpoint import load_into, load_state
from mim_perception.nets.model import ExportModule

if TYPE_CHECKING:
    from mim_perception.inference.backends import BackendConfig


def build_export_module(bundle: Path, manifest: Manifest) -> Any:
    """The bundle's torch weights in the registry architecture, wrapped to return the export outputs."""

    path = load_manifest(bundle, roles=("torch",)).path(bundle, "torch")
    model = build_model(manifest.architecture, len(manifest.detection_classes), len(manifest.segmentation_classes))
    load_into(model, load_state(path), source=str(path))
    untrained = [manifest.segmentation_classes.index(c) for c in manifest.training.get("seg_untrained") or []]
    return ExportModule(model, untrained).eval()


class TorchCudaBackend:
    name = "torch"

    def __init__(self, bundle: Path, manifest: Manifest, cfg: BackendConfig, device: str = "cuda") -> None:

        self.torch = torch
        self.device = torch.device(device)
        self.input_hw = (manifest.input_height, manifest.input_width)
        self.seg_stride = manifest.seg_stride
        if cfg.precision == "int8":
            raise ModelLoadError("the torch backend runs fp32/fp16; int8 needs the tensorrt or onnxruntime backend")
        self.use_graphs = cfg.cuda_graphs and self.device.type == "cuda"
        module = build_export_module(bundle, manifest).to(self.device)
        # fp16 through autocast (weights stay fp32; the uint8 input is normalised in fp32 inside the model).
        self.autocast = self.device.type == "cuda" and cfg.precision == "fp16"
        if self.device.type == "cuda":
            module = module.to(memory_format=torch.channels_last)
            self.stream = torch.cuda.Stream(self.device)
        self.module = module
        self._graph: Any = None
        self._batch = 0
        try:
            for _ in range(max(cfg.warmup_runs, 1 if self.use_graphs else 0)):
                self.infer(np.zeros((1, 3, *self.input_hw), np.uint8))
        except torch.cuda.OutOfMemoryError as e:   # at warm-up, not in the first camera callback
            raise ModelLoadError(f"CUDA out of memory while warming up the torch backend at {self.input_hw}: {e}") from e

    def _amp(self) -> Any:
        return self.torch.autocast("cuda", dtype=self.torch.float16, enabled=self.autocast)

    def _capture(self, batch: int) -> None:
        torch = self.torch
        self._host = torch.empty((batch, 3, *self.input_hw), dtype=torch.uint8).pin_memory()
        self._static_in = torch.empty((batch, 3, *self.input_hw), dtype=torch.uint8, device=self.device)
        with torch.cuda.stream(self.stream), torch.inference_mode(), self._amp():
            for _ in range(3):   # warm the allocator and cuDNN autotuning on the side stream before capture
                self.module(self._static_in)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph, stream=self.stream), torch.inference_mode(), self._amp():
            self._static_out = self.module(self._static_in)
        self._batch = batch

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        torch = self.torch
        if self.device.type != "cuda":
            with torch.inference_mode():
                outs = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
            return ModelOutputs(*(o.float().numpy() if o.is_floating_point() else o.numpy() for o in outs))
        if not self.use_graphs:
            with torch.cuda.stream(self.stream), torch.inference_mode(), self._amp():
                outs = self.module(torch.from_numpy(batch).pin_memory().to(self.device, non_blocking=True))
                host = [o.to("cpu", non_blocking=True) for o in outs]
            self.stream.synchronize()
            return ModelOutputs(*(h.float().numpy() if h.is_floating_point() else h.numpy() for h in host))
        if batch.shape[0] != self._batch:
            self._capture(batch.shape[0])   # new camera count: capture once, replay afterwards
        self._host.numpy()[...] = batch
        with torch.cuda.stream(self.stream):
            self._static_in.copy_(self._host, non_blocking=True)
            self._graph.replay()
            host = [o.to("cpu", non_blocking=True) for o in self._static_out]
        self.stream.synchronize()
        return ModelOutputs(*(h.float().numpy() if h.is_floating_point() else h.numpy() for h in host))
