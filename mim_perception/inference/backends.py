"""Backend choice: ``auto | onnxruntime | torch | tensorrt``; the choice and its reason are logged.

Every backend loads a verified model bundle (manifest sha256), warms up, and runs
``infer(uint8 B×3×H×W BGR) -> ModelOutputs``. An explicitly requested backend that cannot run here is
an error — never a silent fallback; ``auto`` picks the fastest available and says why.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from mim_perception.core.config import rng
from mim_perception.core.errors import ConfigError, ModelLoadError
from mim_perception.core.pipeline import Backend, ModelOutputs
from mim_perception.inference.manifest import Manifest, load_manifest

KINDS = ("auto", "onnxruntime", "torch", "tensorrt")


@dataclass(frozen=True)
class BackendConfig:
    PARAM_FILE: ClassVar[str] = "perception.param.yaml"
    model: str
    kind: str = field(metadata=rng(choices=KINDS))
    precision: str = field(metadata=rng(choices=("fp32", "fp16", "int8")))
    intra_op_threads: int = field(metadata=rng(1, 256))
    blas_threads: int = field(metadata=rng(0, 256))   # 0 = leave the process's BLAS thread pool as it is
    int8_onnx: bool
    cuda_graphs: bool
    engine_cache: str
    warmup_runs: int = field(metadata=rng(0, 1000))


def default_model_dir() -> Path:
    """The shipped default bundle: the one ``models/default.txt`` names (else the first bundle) in the source tree or
    the install share directory."""

    for root in (Path(__file__).resolve().parents[2] / "models", Path(sys.prefix) / "share" / "mim_perception" / "models"):
        if not root.is_dir():
            continue
        pointer = root / "default.txt"
        if pointer.is_file():
            name = pointer.read_text().strip()
            if not (root / name / "manifest.json").is_file():
                raise ModelLoadError(f"{pointer} names {name!r}, which is not a bundle in {root}")
            return root / name
        bundles = sorted(p.parent for p in root.glob("*/manifest.json"))
        if bundles:
            return bundles[0]
    raise ModelLoadError("no model bundle found under models/ (set backend.model to a bundle directory)")


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch  # noqa: PLC0415 -- torch (model extra) is asked about only to pick a backend

    return bool(torch.cuda.is_available())


def choose(kind: str) -> tuple[str, str]:
    """-> (backend kind, reason). Raises ConfigError for an explicit kind that cannot run here."""
    trt = importlib.util.find_spec("tensorrt") is not None
    ort = importlib.util.find_spec("onnxruntime") is not None
    cuda = _cuda_available()
    if kind == "auto":
        if trt and cuda:
            return "tensorrt", "auto: TensorRT and a CUDA GPU are available"
        if cuda:
            return "torch", "auto: CUDA GPU available (PyTorch + CUDA graphs); TensorRT not installed"
        if ort:
            return "onnxruntime", "auto: no CUDA GPU; ONNX Runtime on the CPU"
        raise ConfigError("backend auto: neither a CUDA GPU nor onnxruntime is available")
    needs = {"tensorrt": (trt and cuda, "the tensorrt package and a CUDA GPU"), "torch": (cuda, "a CUDA GPU for torch"),
             "onnxruntime": (ort, "the onnxruntime package")}
    if kind not in needs:
        raise ConfigError(f"backend.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    ok, what = needs[kind]
    if not ok:
        raise ConfigError(f"backend {kind!r} was requested but {what} is not available here (no fallback: "
                          f"set backend.kind to auto or onnxruntime)")
    return kind, f"requested: {kind}"


def limit_blas_threads(n: int) -> None:
    """Cap numpy/scipy's BLAS (OpenBLAS) thread pool of this process at ``n``.

    Process-wide on purpose: OpenBLAS workers keep spinning after each call, and on a small CPU they then fight
    ONNX Runtime's own threads. Measured with bench/bench_monitoring.py on 2 cores: the drift test's few small
    matrix products cost 15 % of frame time with OpenBLAS's default pool and 0.5 % with one thread."""
    threadpool_limits(limits=n, user_api="blas")


def load_backend(cfg: BackendConfig) -> tuple[Backend, Manifest, str]:
    """Verify the bundle, build and warm up the chosen backend -> (backend, manifest, reason)."""
    if cfg.blas_threads:
        limit_blas_threads(cfg.blas_threads)
    bundle = Path(cfg.model) if cfg.model else default_model_dir()
    kind, reason = choose(cfg.kind)
    manifest = load_manifest(bundle, roles=())
    backend: Backend
    if manifest.external and kind in ("onnxruntime", "torch"):
        from mim_perception.inference.external_backend import ExternalBackend  # noqa: PLC0415 -- each runtime (onnxruntime, torch, TensorRT) loads only when its backend is chosen

        if kind == "torch":   # an external ONNX has no torch weights: ONNX Runtime, said in the reason
            reason += f"; {manifest.name} is an external ONNX model (adapter {manifest.adapter}): ONNX Runtime"
        backend = ExternalBackend(bundle, manifest, cfg)
    elif kind == "onnxruntime":
        from mim_perception.inference.ort_backend import OrtBackend  # noqa: PLC0415 -- each runtime (onnxruntime, torch, TensorRT) loads only when its backend is chosen

        backend = OrtBackend(bundle, manifest, cfg)
    elif kind == "torch":
        from mim_perception.inference.torch_backend import TorchCudaBackend  # noqa: PLC0415 -- each runtime (onnxruntime, torch, TensorRT) loads only when its backend is chosen

        backend = TorchCudaBackend(bundle, manifest, cfg)
    else:
        from mim_perception.inference.tensorrt_backend import TensorRTBackend  # noqa: PLC0415 -- each runtime (onnxruntime, torch, TensorRT) loads only when its backend is chosen

        backend = TensorRTBackend(bundle, manifest, cfg)
    return backend, manifest, reason


class SerialBackend:
    """A backend shared by several camera pipelines: one inference at a time (CUDA graphs and pinned buffers are
    static; on the CPU, concurrent runs would only oversubscribe the cores)."""

    def __init__(self, backend: Backend) -> None:
        self.inner = backend
        self.name, self.input_hw, self.seg_stride = backend.name, backend.input_hw, backend.seg_stride
        self.needs_nms = getattr(backend, "needs_nms", True)
        if hasattr(backend, "prepare"):   # keep the inner backend's input contract visible to the pipeline
            self.prepare = backend.prepare
        self._lock = threading.Lock()
        self.users = 0

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        with self._lock:
            return self.inner.infer(batch)


class SharedBackends:
    """One loaded model per (bundle, backend settings) for all the cameras of one process (the in-process graph
    runner owns one): N cameras cost one model in memory, not N."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, BackendConfig], tuple[SerialBackend, Manifest, str]] = {}

    def get(self, cfg: BackendConfig) -> tuple[SerialBackend, Manifest, str]:
        key = (str((Path(cfg.model) if cfg.model else default_model_dir()).resolve()), cfg)
        with self._lock:   # cameras configure concurrently only in theory, but a double load would waste memory
            if key not in self._loaded:
                backend, manifest, reason = load_backend(cfg)
                self._loaded[key] = (SerialBackend(backend), manifest, reason)
            shared, manifest, reason = self._loaded[key]
            shared.users += 1
        return shared, manifest, reason if shared.users == 1 else f"{reason}; model shared by {shared.users} cameras"
