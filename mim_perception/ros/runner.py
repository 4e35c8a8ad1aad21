"""`mim-perception run`: the whole node graph in one process (pip users have no launch/ros2cli).

Nodes come from the shared graph description (``mim_perception.ros.graph``), so the launch files and
this runner cannot drift. One multi-threaded executor; images never cross a process boundary inside
a camera pipeline. Lifecycle: every node is configured, then activated; a failed configure stops the
runner with the node's reason and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

from mim_perception.core.config import load_config
from mim_perception.core.errors import MimPerceptionError
from mim_perception.inference.backends import SharedBackends
from mim_perception.ros.graph import Camera, GraphConfig, NodeSpec, describe, fastdds_env, ros_args


class GraphRunner:
    """Build the nodes of ``specs`` in ``context`` and spin them on a background thread."""

    def __init__(self, specs: list[NodeSpec], context: Any = None, threads: int = 4, keep_failed: bool = False,
                 single_threaded: bool = False) -> None:
        self.specs = specs
        self.single_threaded = single_threaded   # the executor `ros2 launch` gives each node (console scripts)
        self.keep_failed = keep_failed   # True: a node whose configure failed stays up, reporting ERROR (vehicles)
        self.failed: list[str] = []
        self.context = context
        self.threads = threads
        self.nodes: list[Any] = []
        self._executor: Any = None
        self._thread: threading.Thread | None = None

        self.shared_backends = SharedBackends()   # cameras with the same model settings load it once

    def start(self) -> GraphRunner:

        for spec in self.specs:
            module, _, cls_name = spec.factory.partition(":")
            cls = getattr(importlib.import_module(module), cls_name)
            extra = {"shared_backends": self.shared_backends} if getattr(cls, "accepts_shared_backends", False) else {}
            node = cls(spec.name, namespace=spec.namespace, cli_args=ros_args(spec), context=self.context,
                       use_global_arguments=False, **extra)
            self.nodes.append(node)
        self._executor = SingleThreadedExecutor(context=self.context) if self.single_threaded else \
            MultiThreadedExecutor(num_threads=self.threads, context=self.context)
        for node in self.nodes:
            self._executor.add_node(node)
        for node in self.nodes:
            try:
                node.bring_up()
            except MimPerceptionError as e:
                if not self.keep_failed:
                    self.stop()
                    raise
                self.failed.append(str(e))
        self._thread = spin_in_thread(self._executor, "mim-graph")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._executor is not None:
            self._executor.shutdown(timeout_sec=timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        for node in self.nodes:
            node.destroy_node()
        self.nodes.clear()

    def __enter__(self) -> GraphRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spin_in_thread(executor: Any, name: str) -> threading.Thread:
    """Spin ``executor`` in a daemon thread until it or its context is shut down (which ends the thread quietly)."""

    def spin() -> None:
        try:
            executor.spin()
        except ExternalShutdownException:
            pass

    thread = threading.Thread(target=spin, name=name, daemon=True)
    thread.start()
    return thread


def graph_from_args(params_file: str | None, cameras: list[str], use_sim_time: bool | None) -> tuple[GraphConfig, list[NodeSpec]]:
    overrides: dict[str, Any] = {}
    if use_sim_time is not None:
        overrides["graph.use_sim_time"] = use_sim_time
    cfg = load_config(GraphConfig, params_file, overrides, prefix="graph.")
    cams = [Camera.parse(c) for c in cameras] if cameras else None
    return cfg, describe(cfg, cams, params_file)


def run(args: argparse.Namespace) -> int:
    cfg, specs = graph_from_args(args.params_file, args.camera, True if args.use_sim_time else None)
    os.environ.update(fastdds_env(cfg))  # before rclpy.init: Fast DDS reads it at participant creation

    rclpy.init()
    runner = GraphRunner(specs, threads=cfg.executor_threads, keep_failed=True)
    try:
        runner.start()
        for spec in specs:
            print(f"running {spec.namespace}/{spec.name}")
        for reason in runner.failed:
            print(f"ERROR (reported on /diagnostics, node kept alive): {reason}", file=sys.stderr)
        deadline = time.monotonic() + args.duration if args.duration > 0 else float("inf")
        while rclpy.ok() and time.monotonic() < deadline:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        rclpy.try_shutdown()
    return 0


def register(sub: Any, verb: str) -> None:
    p = sub.add_parser(verb, help="run the node graph in one process (pip installs; launch files on apt installs)")
    p.add_argument("--params-file", help="ROS 2 parameters file applied on top of the shipped config/*.param.yaml")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=TOPIC",
                   help="camera pipeline (repeatable); overrides graph.cameras. TOPIC ending in /compressed = CompressedImage")
    p.add_argument("--use-sim-time", action="store_true", help="follow /clock (bag replay with --clock, simulator)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.set_defaults(func=run)
