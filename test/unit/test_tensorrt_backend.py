"""TensorRT backend logic against a fake ``tensorrt`` (and a CPU stand-in for torch.cuda): cache keys and
staleness, engine build flags, INT8 calibration batching, I/O binding and rebinding. Never run on hardware."""

from __future__ import annotations

import contextlib
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mim_perception.core.config import load_config
from mim_perception.core.errors import ModelLoadError
from mim_perception.inference.backends import BackendConfig
from mim_perception.inference.manifest import Manifest, load_manifest, write_manifest
from mim_perception.inference.tensorrt_backend import TensorRTBackend, cache_key, calibration_batches

H, W, K, D = 64, 96, 10, 8


class FakeTRT(types.SimpleNamespace):
    """The slice of the TensorRT 10 Python API the backend uses, recording what it was asked to do."""

    def __init__(self, version: str = "10.3.0") -> None:
        fake = self

        class Logger:
            WARNING = 2

            def __init__(self, level: int) -> None:
                self.level = level

        class Network:
            pass

        class Parser:
            def __init__(self, network: Network, logger: Logger) -> None:
                self.num_errors = 0

            def parse(self, data: bytes) -> bool:
                if b"broken" in data:
                    self.num_errors = 1
                    return False
                return True

            def get_error(self, i: int) -> str:
                return "unsupported operator Foo"

        class Config:
            def __init__(self) -> None:
                self.flags: set[str] = set()
                self.int8_calibrator: Any = None

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                self.pool = (pool, size)

            def set_flag(self, flag: str) -> None:
                self.flags.add(flag)

        class Builder:
            def __init__(self, logger: Logger) -> None:
                pass

            def create_network(self, flags: int) -> Network:
                return Network()

            def create_builder_config(self) -> Config:
                return Config()

            def build_serialized_network(self, network: Network, config: Config) -> bytes:
                fake.builds.append(sorted(config.flags))
                if config.int8_calibrator is not None:   # TensorRT pulls batches until the calibrator returns None
                    while config.int8_calibrator.get_batch(["images"]) is not None:
                        pass
                return b"ENGINE"

        class Context:
            def __init__(self, engine: Engine) -> None:
                self.engine, self.shapes, self.addresses, self.runs = engine, {}, {}, []

            def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
                self.batch = shape[0]

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                b = self.batch
                if name in fake.shapes:
                    return (b, *fake.shapes[name])
                return {"images": (b, 3, H, W), "boxes": (b, K, 4), "scores": (b, K), "classes": (b, K),
                        "seg": (b, H // 4, W // 4), "embed": (b, D)}[name]

            def set_tensor_address(self, name: str, ptr: int) -> None:
                self.addresses[name] = ptr

            def execute_async_v3(self, stream: int) -> bool:
                self.runs.append(stream)
                return True

        class Engine:
            def __init__(self, names: list[str]) -> None:
                self.names = names
                self.num_io_tensors = len(names)
                self.contexts: list[Context] = []

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str) -> str:
                return "INPUT" if name == "images" else "OUTPUT"

            def get_tensor_dtype(self, name: str) -> str:
                return fake.dtypes.get(name, {"images": "UINT8", "classes": "INT32"}.get(name, "FLOAT"))

            def create_execution_context(self) -> Context:
                self.contexts.append(Context(self))
                return self.contexts[-1]

        class Runtime:
            def __init__(self, logger: Logger) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
                fake.engines.append(Engine(fake.io_names))
                return fake.engines[-1] if data == b"ENGINE" else None

        class Calibrator:
            def __init__(self) -> None:
                pass

        super().__init__(
            __version__=version, Logger=Logger, Builder=Builder, OnnxParser=Parser, Runtime=Runtime,
            MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
            BuilderFlag=types.SimpleNamespace(FP16="FP16", INT8="INT8"),
            TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
            DataType=types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT32="INT32", INT64="INT64", UINT8="UINT8", BOOL="BOOL"),
            IInt8EntropyCalibrator2=Calibrator, builds=[], engines=[], shapes={}, dtypes={},
            io_names=["images", "boxes", "scores", "classes", "seg", "embed"])


class _Pinned:
    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def pin_memory(self) -> torch.Tensor:
        return self.t

    def cuda(self) -> torch.Tensor:
        return self.t


class FakeTorch(types.SimpleNamespace):
    """Real CPU torch, with the CUDA calls the backend makes answered on the CPU."""

    def __init__(self) -> None:
        stream = types.SimpleNamespace(cuda_stream=1234, synchronize=lambda: None)
        cuda = types.SimpleNamespace(
            get_device_properties=lambda i: types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0),
            Stream=lambda: stream, stream=lambda s: contextlib.nullcontext())
        super().__init__(cuda=cuda, float32=torch.float32, float16=torch.float16, int32=torch.int32, int64=torch.int64,
                         uint8=torch.uint8, bool=torch.bool,
                         empty=lambda shape, dtype, device: torch.zeros(shape, dtype=dtype),
                         from_numpy=lambda a: _Pinned(torch.from_numpy(a)))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"onnx graph")
    write_manifest(tmp_path, Manifest(
        name="t", architecture="tiny", input_height=H, input_width=W, input_format="uint8 NCHW BGR", detection_classes=["car"],
        segmentation_classes=["road"], segmentation_palette_bgr=[[0, 0, 0]], seg_stride=4, topk=K, embed_dim=D,
        files={"onnx": "model.onnx"}, sha256={}))
    return tmp_path


def _cfg(tmp_path: Path, **kw: Any) -> BackendConfig:
    return load_config(BackendConfig, None, {"backend.engine_cache": str(tmp_path / "cache"), "backend.warmup_runs": 1,
                                             **{f"backend.{k}": v for k, v in kw.items()}}, prefix="backend.")


def test_cache_key_changes_with_every_part() -> None:
    base = ("NVIDIA H100", (9, 0), "10.3.0", "ab" * 32, "fp16", 1)
    keys = {cache_key(*base)}
    for i, alt in enumerate([("RTX 4090",), ((8, 9),), ("10.4.0",), ("cd" * 32,), ("int8",), (4,)]):
        keys.add(cache_key(*base[:i], *alt, *base[i + 1:]))
    assert len(keys) == 7
    assert "/" not in cache_key("A/B weird GPU", (9, 0), "10.3.0", "ab", "fp16", 1)


def test_build_once_then_reuse_and_rebuild_when_stale(bundle: Path, tmp_path: Path) -> None:
    trt, t = FakeTRT(), FakeTorch()
    b1 = TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path), trt=trt, torch=t)
    assert b1.built and trt.builds == [["FP16"]] and b1.engine_path.is_file()
    b2 = TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path), trt=trt, torch=t)
    assert not b2.built and len(trt.builds) == 1, "same GPU + TensorRT + model: cached engine reused"
    b3 = TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path), trt=FakeTRT("10.5.1"), torch=t)
    assert b3.built and b3.engine_path != b1.engine_path, "a TensorRT upgrade never reuses an old engine"
    b4 = TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path, precision="fp32"), trt=trt, torch=t)
    assert b4.built and trt.builds[-1] == []


def test_io_binding_and_rebinding_for_more_cameras(bundle: Path, tmp_path: Path) -> None:
    trt = FakeTRT()
    b = TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path), trt=trt, torch=FakeTorch())
    ctx = trt.engines[-1].contexts[-1]
    assert set(ctx.addresses) == set(trt.io_names) and ctx.runs == [1234]   # warm-up ran on our stream
    out = b.infer(np.zeros((3, 3, H, W), np.uint8))
    assert out.boxes.shape == (3, K, 4) and out.seg.shape == (3, H // 4, W // 4) and out.embed.shape == (3, D)
    assert b.buffers["images"].shape == (3, 3, H, W)


def test_int8_calibration_and_errors(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="calibration"):
        TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path, precision="int8"), trt=FakeTRT(), torch=FakeTorch())
    frames = (np.full((3, H, W), i, np.uint8) for i in range(20))
    trt = FakeTRT()
    TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path, precision="int8"), trt=trt, torch=FakeTorch(),
                    calibration=frames)
    assert trt.builds == [["FP16", "INT8"]]
    batches = list(calibration_batches((np.zeros((3, 2, 2), np.uint8) for _ in range(21)), 8, 100))
    assert [b.shape[0] for b in batches] == [8, 8], "partial last batch dropped"
    assert len(list(calibration_batches((np.zeros((3, 2, 2), np.uint8) for _ in range(100)), 4, 10))) == 2
    (bundle / "model.onnx").write_bytes(b"broken graph")
    write_manifest(bundle, _manifest_of(bundle))   # re-hash: the broken graph passes the sha check, fails parsing
    with pytest.raises(ModelLoadError, match="unsupported operator Foo"):
        TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path / "other"), trt=FakeTRT(), torch=FakeTorch())


def _manifest_of(bundle: Path) -> Manifest:
    import json

    doc = json.loads((bundle / "manifest.json").read_text())
    return Manifest(**doc)


def test_missing_outputs_are_an_error(bundle: Path, tmp_path: Path) -> None:
    trt = FakeTRT()
    trt.io_names = ["images", "boxes"]
    with pytest.raises(ModelLoadError, match="lacks outputs"):
        TensorRTBackend(bundle, load_manifest(bundle), _cfg(tmp_path), trt=trt, torch=FakeTorch())


def test_external_bundle_engine_decodes_with_its_adapter(tmp_path: Path) -> None:
    """An import-model bundle (YOLOX outputs) through TensorRT: float input per the contract, host-side decode."""
    from mim_perception.core.config import config_dir
    from mim_perception.inference.adapters import YoloxAdapter, grid
    from mim_perception.inference.external import ClassMap, load_class_names

    coco = load_class_names("coco")
    a = len(grid(H, W, (8, 16, 32))[0])
    (tmp_path / "model.onnx").write_bytes(b"yolox graph")
    cmap = ClassMap.load(config_dir() / "class_maps" / "coco_to_driving.yaml")
    write_manifest(tmp_path, Manifest(
        name="yolox", architecture="external:yolox", input_height=H, input_width=W, input_format="float32",
        detection_classes=list(cmap.targets), segmentation_classes=[], segmentation_palette_bgr=[], seg_stride=0, topk=0,
        embed_dim=0, files={"onnx": "model.onnx"}, sha256={}, adapter="yolox",
        input_contract=YoloxAdapter().default_contract(H, W).to_dict(), source_classes=coco, class_map=cmap.to_dict()))
    trt = FakeTRT()
    trt.io_names, trt.shapes, trt.dtypes = ["images", "output"], {"output": (a, 85)}, {"images": "FLOAT"}
    b = TensorRTBackend(tmp_path, load_manifest(tmp_path), _cfg(tmp_path), trt=trt, torch=FakeTorch())
    x, geom = b.prepare(np.zeros((H, W, 3), np.uint8))
    assert x.dtype == np.float32 and x.shape == (3, H, W) and geom.sx == 1.0 and b.needs_nms
    b.buffers["output"][0, 0, :6] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.9, 0.0])     # cell (0, 0) of stride 8
    b.buffers["output"][0, 0, 5 + 2] = 0.8                                              # COCO car
    out = b.infer(x[None])
    assert out.seg is None and out.embed is None and out.boxes.shape[0] == 1
    np.testing.assert_allclose(out.boxes[0, 0], [0, 0, 8, 8], atol=1e-5)              # centre (4, 4), 8×8 px
    assert out.classes[0, 0] == 0 and out.scores[0, 0] == pytest.approx(0.72)
    trt2 = FakeTRT()
    trt2.io_names, trt2.shapes = ["images", "output"], {"output": (a, 84)}
    with pytest.raises(ModelLoadError, match="yolox adapter expects"):
        TensorRTBackend(tmp_path, load_manifest(tmp_path), _cfg(tmp_path / "c2"), trt=trt2, torch=FakeTorch())
