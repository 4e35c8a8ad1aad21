"""Shared test fixtures: isolated ROS 2 contexts and bounded waiting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def _domain_id() -> int:
    # Each xdist worker (and each concurrent pytest process) gets its own DDS domain so graph tests never
    # see each other's nodes. Valid Fast DDS domain ids stop at 232.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    idx = int(worker[2:]) if worker[2:].isdigit() else 0
    return 10 + (os.getpid() % 180 + idx) % 200


@pytest.fixture(scope="session", autouse=True)
def _ros_env(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("ROS_LOG_DIR", str(tmp_path_factory.mktemp("ros_log")))
    os.environ["ROS_DOMAIN_ID"] = str(_domain_id())
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "1")


@pytest.fixture
def ros_context() -> Iterator[Any]:
    """A private rclpy context per test: no global init, always shut down."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.try_shutdown(context=ctx)


def wait_for(predicate: Callable[[], bool], timeout: float, spin: Callable[[], None] | None = None,
             what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds. ``spin`` runs between polls."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.1f} s waiting for {what}")
        if spin is not None:
            spin()
        else:
            time.sleep(0.02)


@pytest.fixture
def probe(ros_context: Any) -> Iterator[tuple[Any, Callable[[], None]]]:
    """A plain rclpy node in the test's context for publishing/subscribing, and a ``spin()`` that serves it once."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("probe", context=ros_context)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        yield node, lambda: ex.spin_once(timeout_sec=0.02)
    finally:
        ex.shutdown()
        node.destroy_node()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A verified model bundle of a tiny randomly initialised det+seg model (ONNX, manifest, drift reference),
    exported by the project's own `export` path: what the perception node loads in graph and e2e tests."""
    from pathlib import Path

    import torch

    from mim_perception.core.labels import LabelSpace
    from mim_perception.nets import build_model
    from mim_perception.training.checkpoint import save_checkpoint
    from mim_perception.training.export import export_bundle

    root = tmp_path_factory.mktemp("bundle")
    labels = LabelSpace.load()
    torch.manual_seed(0)
    model = build_model("convnext_smoke", len(labels.detection), len(labels.segmentation))
    save_checkpoint(root / "ckpt.pt", model, {"train": {"arch": "convnext_smoke"}, "augment": {"height": 192, "width": 320}},
                    {"arch": "convnext_smoke"})
    export_bundle(root / "ckpt.pt", root / "tiny", ["synthetic:2:20:0:320x192"], mim=None, name="tiny", frames=40,
                  cache_dir=Path(root / "cache"), int8=False)
    return root / "tiny"


@pytest.fixture(scope="session")
def realdata() -> Any:
    """The real driving data folder next to the checkout (CI has it); tests that need it skip elsewhere."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    if not (root / "teachers").is_dir():
        pytest.skip(f"real driving data not present ({root}): KITTI/CamVid/teacher tests need it")
    return root


def onnx_constant_model(path: Any, input_shape: list[int], outputs: dict[str, Any], input_name: str = "images",
                        input_type: int = 1) -> Any:
    """A tiny ONNX graph with one image input whose outputs are fixed arrays (adapter tests: known raw outputs)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    inp = helper.make_tensor_value_info(input_name, input_type, input_shape)
    nodes, outs = [], []
    for name, arr in outputs.items():
        a = np.asarray(arr, np.float32)
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name + "_value")))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape)))
    model = helper.make_model(helper.make_graph(nodes, "constant", [inp], outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path
