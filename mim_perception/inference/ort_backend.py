"""ONNX Runtime on the CPU: the embedded default (static input shape from the manifest, threads from params)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.pipeline import ModelOutputs
from mim_perception.inference.manifest import OUTPUT_NAMES, Manifest, load_manifest

if TYPE_CHECKING:
    from mim_perception.inference.backends import BackendConfig


def cpu_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session of ``path`` with ``threads`` intra-op threads (the one way every part of the
    project opens an ONNX file); ModelLoadError when ONNX Runtime is missing or the graph cannot be loaded."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 -- ONNX Runtime (model extra): its absence becomes a ModelLoadError

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3   # errors only: graphs exported by older tools warn once per initializer
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:   # ImportError, or ORT's own exception types for unreadable or invalid graphs
        raise ModelLoadError(f"ONNX Runtime cannot load {path}: {e}") from e


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, bundle: Path, manifest: Manifest, cfg: BackendConfig) -> None:
        role = "onnx_int8" if cfg.int8_onnx and "onnx_int8" in manifest.files else "onnx"
        path = load_manifest(bundle, roles=(role,)).path(bundle, role)   # sha256 checked right before use
        self.session = cpu_session(path, cfg.intra_op_threads)
        self.input_name = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        if names != list(OUTPUT_NAMES):
            raise ModelLoadError(f"{path}: outputs {names}, expected {list(OUTPUT_NAMES)} (export with `mim-perception export`)")
        self.input_hw = (manifest.input_height, manifest.input_width)
        self.seg_stride = manifest.seg_stride
        self.model_file = path.name
        for _ in range(cfg.warmup_runs):
            self.infer(np.zeros((1, 3, *self.input_hw), np.uint8))

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        if batch.dtype != np.uint8 or batch.shape[1:] != (3, *self.input_hw):
            h, w = self.input_hw
            raise ValueError(f"ORT backend expects uint8 B×3×{h}×{w}, got {batch.dtype} {batch.shape}")
        # The exported graph has a static batch of 1; on the CPU batching buys nothing, so cameras run in turn.
        parts = [self.session.run(list(OUTPUT_NAMES), {self.input_name: np.ascontiguousarray(batch[i:i + 1])})
                 for i in range(batch.shape[0])]
        boxes, scores, classes, seg, embed = (np.concatenate(p) for p in zip(*parts, strict=True))
        return ModelOutputs(boxes, scores, classes, seg, embed)
