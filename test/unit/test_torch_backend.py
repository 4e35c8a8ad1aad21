"""The torch backend's CPU path agrees with ONNX Runtime on the same bundle; unavailable backends are errors."""

from __future__ import annotations

import numpy as np
import pytest

from mim_perception.core.config import load_config
from mim_perception.core.errors import ConfigError, ModelLoadError
from mim_perception.inference.backends import BackendConfig, choose
from mim_perception.inference.manifest import load_manifest
from mim_perception.inference.ort_backend import OrtBackend
from mim_perception.inference.torch_backend import TorchCudaBackend


def _cfg(bundle, **kw):
    return load_config(BackendConfig, None, {"backend.model": str(bundle), **{f"backend.{k}": v for k, v in kw.items()}},
                       prefix="backend.")


def test_torch_cpu_matches_onnxruntime(tiny_bundle) -> None:
    m = load_manifest(tiny_bundle)
    t = TorchCudaBackend(tiny_bundle, m, _cfg(tiny_bundle), device="cpu")
    o = OrtBackend(tiny_bundle, m, _cfg(tiny_bundle))
    x = np.random.default_rng(0).integers(0, 255, (2, 3, *o.input_hw), np.uint8)
    a, b = t.infer(x), o.infer(x)
    assert np.abs(np.sort(a.scores, 1) - np.sort(b.scores, 1)).max() < 1e-5
    assert np.abs(a.embed - b.embed).max() < 1e-4 and (a.seg == b.seg).mean() > 0.999


def test_int8_on_torch_and_unavailable_backends_are_errors(tiny_bundle) -> None:
    with pytest.raises(ModelLoadError, match="int8"):
        TorchCudaBackend(tiny_bundle, load_manifest(tiny_bundle), _cfg(tiny_bundle, precision="int8"), device="cpu")
    import importlib.util

    import torch

    trt, cuda = importlib.util.find_spec("tensorrt") is not None, torch.cuda.is_available()
    if not (trt and cuda):
        with pytest.raises(ConfigError, match="no fallback"):
            choose("tensorrt")
    with pytest.raises(ConfigError, match="must be one of"):
        choose("openvino")
    kind, reason = choose("auto")   # what auto picks depends on the machine: check it against what is here
    expected = "tensorrt" if trt and cuda else "torch" if cuda else "onnxruntime"
    assert kind == expected and reason.startswith("auto:")
