"""External detectors in the perception node: ONNX Runtime + the bundle's adapter behind the Backend protocol.

The node sees an ordinary backend with its own ``prepare`` (the adapter's input contract: colour order, scaling,
letterbox placement) and outputs without segmentation or embedding; ``needs_nms`` is False for set-prediction
models (RT-DETR), which the pipeline then leaves un-suppressed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mim_perception.core.pipeline import ModelOutputs
from mim_perception.core.preprocess import Geometry
from mim_perception.inference.adapters import prepare
from mim_perception.inference.external import open_external
from mim_perception.inference.manifest import Manifest

if TYPE_CHECKING:
    from mim_perception.inference.backends import BackendConfig


class ExternalBackend:
    name = "onnxruntime"

    def __init__(self, bundle: Path, manifest: Manifest, cfg: BackendConfig) -> None:
        self.detector, _ = open_external(bundle, cfg.intra_op_threads)   # sha256, adapter, contract, class map checked
        c = self.detector.contract
        self.input_hw = (c.height, c.width)
        self.seg_stride = 0
        self.needs_nms = self.detector.adapter.nms
        self.model_file = manifest.files["onnx"]
        for _ in range(cfg.warmup_runs):
            self.infer(self.prepare(np.zeros((c.height, c.width, 3), np.uint8))[0][None])

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        x, geom = prepare(image, self.detector.contract)
        return x[0], geom

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        h, w = self.input_hw
        if batch.dtype != np.float32 or batch.shape[1:] != (3, h, w):
            raise ValueError(f"external backend expects float32 B×3×{h}×{w} from its prepare(), got {batch.dtype} {batch.shape}")
        # one image per call: exported detectors usually have a static batch of 1
        raws = [self.detector.run(batch[i:i + 1]) for i in range(batch.shape[0])]
        return self.detector.decoder.batch({k: np.concatenate([r[k] for r in raws]) for k in raws[0]})
