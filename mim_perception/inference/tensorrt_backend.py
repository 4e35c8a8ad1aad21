"""TensorRT backend: engine built from the bundle's ONNX file, cached on disk, executed on a CUDA stream.

NOT RUN ON HARDWARE: TensorRT cannot be installed on any machine this project has had. The logic (cache
keys, staleness, calibration batching, I/O binding) is tested against a fake ``tensorrt`` module; the
API calls follow the TensorRT 10 Python API. Device memory comes from torch CUDA tensors (torch is a
dependency anyway), so no pycuda/cuda-python is needed.

Cache key = GPU name + compute capability + TensorRT version + model sha256 + precision: an engine is
only valid for the exact GPU/TensorRT pair that built it, and a changed model must never reuse an engine.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.pipeline import ModelOutputs
from mim_perception.core.preprocess import Geometry
from mim_perception.inference.adapters import prepare
from mim_perception.inference.external import decoder_from_manifest
from mim_perception.inference.manifest import OUTPUT_NAMES, Manifest, load_manifest

if TYPE_CHECKING:
    from mim_perception.inference.backends import BackendConfig

WORKSPACE_BYTES = 2 << 30


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mim_perception" / "engines"


def cache_key(gpu_name: str, capability: tuple[int, int], trt_version: str, model_sha256: str, precision: str,
              batch: int) -> str:
    ident = json.dumps([gpu_name, list(capability), trt_version, model_sha256, precision, batch])
    safe_gpu = "".join(c if c.isalnum() else "_" for c in gpu_name)[:40]
    return f"{safe_gpu}_sm{capability[0]}{capability[1]}_trt{trt_version}_{precision}_b{batch}_" \
           f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.engine"


def calibration_batches(frames: Iterator[np.ndarray], batch: int, limit: int) -> Iterator[np.ndarray]:
    """Group uint8 3×H×W frames into B×3×H×W batches for the INT8 calibrator; a last partial batch is dropped
    (TensorRT calibrators take fixed-size batches), at most ``limit`` frames are used."""
    buf: list[np.ndarray] = []
    used = 0
    for f in frames:
        if used >= limit:
            break
        buf.append(f)
        used += 1
        if len(buf) == batch:
            yield np.ascontiguousarray(np.stack(buf))
            buf = []


def make_calibrator(trt: Any, batches: Iterator[np.ndarray], cache_file: Path, torch: Any) -> Any:
    """An IInt8EntropyCalibrator2 feeding uint8 batches from a folder/bag (via ``batches``) through device memory."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._it = batches
            self._dev: Any = None
            self.batches_served = 0

        def get_batch_size(self) -> int:
            return int(self._dev.shape[0]) if self._dev is not None else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            b = next(self._it, None)
            if b is None:
                return None
            self._dev = torch.from_numpy(b).cuda()
            self.batches_served += 1
            return [int(self._dev.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


def build_engine(trt: Any, onnx_path: Path, precision: str, calibrator: Any = None) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)   # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibrator is None:
            raise ModelLoadError("TensorRT int8 needs calibration frames (backend.calibration or build-engine --calib)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(f"TensorRT failed to build an engine from {onnx_path}")
    return bytes(serialized)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, bundle: Path, manifest: Manifest, cfg: BackendConfig, *, trt: Any = None, torch: Any = None,
                 calibration: Iterator[np.ndarray] | None = None) -> None:
        # trt/torch are injectable so the logic is testable without TensorRT or a GPU.
        self.trt: Any = trt if trt is not None else importlib.import_module("tensorrt")
        self.torch: Any = torch if torch is not None else importlib.import_module("torch")
        trt, torch = self.trt, self.torch
        onnx_path = load_manifest(bundle, roles=("onnx",)).path(bundle, "onnx")
        self.input_hw = (manifest.input_height, manifest.input_width)
        self.seg_stride = manifest.seg_stride
        # External detectors (import-model): float input per the adapter's contract, raw outputs decoded on the host.
        self.decoder = decoder_from_manifest(manifest, str(bundle)) if manifest.external else None
        if self.decoder is not None:
            self.prepare = self._prepare_external
            self.needs_nms = self.decoder.adapter.nms
        props = torch.cuda.get_device_properties(0)
        key = cache_key(props.name, (props.major, props.minor), trt.__version__, manifest.sha256[onnx_path.name],
                        cfg.precision, 1)
        cache = Path(cfg.engine_cache) if cfg.engine_cache else default_cache_dir()
        self.engine_path = cache / key
        self.built = False
        if not self.engine_path.is_file():   # missing or stale (any key part changed -> a different file name)
            cache.mkdir(parents=True, exist_ok=True)
            calib = None
            if cfg.precision == "int8" and calibration is not None:
                batches = calibration_batches(calibration, 8, 512)
                calib = make_calibrator(trt, batches, self.engine_path.with_suffix(".calib"), torch)
            data = build_engine(trt, onnx_path, cfg.precision, calib)
            tmp = self.engine_path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(self.engine_path)
            self.built = True
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:
            raise ModelLoadError(f"cannot deserialize TensorRT engine {self.engine_path} (delete it to rebuild)")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self._bind(1)
        for _ in range(cfg.warmup_runs):
            self.infer(np.zeros((1, 3, *self.input_hw), np.float32 if self.decoder is not None else np.uint8))

    def _prepare_external(self, image: np.ndarray) -> tuple[np.ndarray, Geometry]:
        assert self.decoder is not None
        x, geom = prepare(image, self.decoder.contract)
        return x[0], geom

    def _bind(self, batch: int) -> None:
        """Allocate device tensors for every I/O tensor at this batch size and register their addresses."""
        trt, torch = self.trt, self.torch
        dtypes = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16, trt.DataType.INT32: torch.int32,
                  trt.DataType.INT64: torch.int64, trt.DataType.UINT8: torch.uint8, trt.DataType.BOOL: torch.bool}
        self.buffers: dict[str, Any] = {}
        self.batch = batch
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.context.set_input_shape(name, (batch, 3, *self.input_hw))
                self.input_name = name
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = torch.empty(shape, dtype=dtypes[self.engine.get_tensor_dtype(name)], device="cuda")
            self.context.set_tensor_address(name, int(self.buffers[name].data_ptr()))
        if self.decoder is not None:
            self.outputs = [n for n in self.buffers if n != self.input_name]
            self.decoder.adapter.check_outputs([(n, list(self.buffers[n].shape)) for n in self.outputs],
                                               len(self.decoder.class_names), self.decoder.contract)
            return
        self.outputs = list(OUTPUT_NAMES)
        missing = [o for o in OUTPUT_NAMES if o not in self.buffers]
        if missing:
            raise ModelLoadError(f"TensorRT engine {self.engine_path} lacks outputs {missing}")

    def infer(self, batch: np.ndarray) -> ModelOutputs:
        torch = self.torch
        if batch.shape[0] != self.batch:
            self._bind(batch.shape[0])   # a new camera count: rebind once, then steady state
        with torch.cuda.stream(self.stream):
            self.buffers[self.input_name].copy_(torch.from_numpy(batch).pin_memory(), non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            host = [self.buffers[o].to("cpu", non_blocking=True) for o in self.outputs]
        self.stream.synchronize()
        arrays = [h.float().numpy() if h.dtype == torch.float16 else h.numpy() for h in host]
        if self.decoder is not None:
            return self.decoder.batch(dict(zip(self.outputs, arrays, strict=True)))
        boxes, scores, classes, seg, embed = arrays
        return ModelOutputs(boxes, scores, classes, seg, embed)
