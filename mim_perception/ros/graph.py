"""The one description of the node graph, used by both `mim-perception run` and the launch files.

ROS-free on purpose (launch files import it without rclpy). A test checks that the launch file and
the runner produce the same nodes, namespaces, remaps and parameter files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mim_perception.core.config import config_dir, rng
from mim_perception.core.errors import ConfigError


@dataclass(frozen=True)
class GraphConfig:
    PARAM_FILE: ClassVar[str] = "graph.param.yaml"
    cameras: list[str]
    camera_monitor: bool
    perception: bool
    standalone_tracker: bool
    use_sim_time: bool
    fastdds_large_data: bool
    executor_threads: int = field(metadata=rng(1, 64))


@dataclass(frozen=True)
class Camera:
    name: str
    topic: str
    compressed: bool

    @staticmethod
    def parse(spec: str) -> Camera:
        """``NAME=TOPIC``; a topic ending in ``/compressed`` carries sensor_msgs/CompressedImage."""
        name, sep, topic = spec.partition("=")
        if not sep or not name or not topic:
            raise ConfigError(f"camera spec {spec!r} must look like NAME=TOPIC, e.g. front=/camera/front/image_raw")
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"camera name {name!r} must be letters, digits and '_' (it becomes a namespace)")
        if not topic.startswith("/"):
            topic = "/" + topic
        compressed = topic.endswith("/compressed")
        return Camera(name, topic.removesuffix("/compressed") if compressed else topic, compressed)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    namespace: str
    executable: str                       # console script (launch_ros)
    factory: str                          # "module:Class" (in-process runner)
    params_files: tuple[str, ...]         # absolute paths, applied in order
    remaps: tuple[tuple[str, str], ...] = ()
    overrides: tuple[tuple[str, object], ...] = ()   # single parameters (-p name:=value)


def describe(cfg: GraphConfig, cameras: list[Camera] | None = None, user_params: str | None = None) -> list[NodeSpec]:
    """Nodes, namespaces, remaps and parameter files of the graph."""
    cams = cameras if cameras is not None else [Camera.parse(c) for c in cfg.cameras]
    if not cams:
        raise ConfigError("the graph needs at least one camera (graph.cameras or --camera NAME=TOPIC)")
    if len({c.name for c in cams}) != len(cams):
        raise ConfigError(f"camera names must be unique: {[c.name for c in cams]}")
    cdir = config_dir()
    extra = (str(Path(user_params).resolve()),) if user_params else ()
    sim = (("use_sim_time", True),) if cfg.use_sim_time else ()
    nodes: list[NodeSpec] = []
    for cam in cams:
        transport = "compressed" if cam.compressed else "raw"
        image_remaps = (("~/in/image", cam.topic), ("~/in/image/compressed", cam.topic + "/compressed"))
        if cfg.camera_monitor:
            nodes.append(NodeSpec(
                name="camera_monitor", namespace="/" + cam.name, executable="camera_monitor",
                factory="mim_perception.ros.nodes.camera_monitor:CameraMonitor",
                params_files=(str(cdir / "input.param.yaml"), str(cdir / "monitor.param.yaml"), *extra),
                remaps=image_remaps,
                overrides=(("input.transport", transport), ("input.hardware_id", cam.name), *sim),
            ))
        if cfg.perception:
            nodes.append(NodeSpec(
                name="perception", namespace="/" + cam.name, executable="perception",
                factory="mim_perception.ros.nodes.perception:PerceptionNode",
                params_files=tuple(str(cdir / f) for f in ("input.param.yaml", "monitor.param.yaml", "perception.param.yaml",
                                                            "tracker.param.yaml")) + extra,
                remaps=image_remaps,
                overrides=(("input.transport", transport), ("input.hardware_id", cam.name), *sim),
            ))
        if cfg.standalone_tracker:
            nodes.append(NodeSpec(
                name="tracker", namespace="/" + cam.name, executable="tracker_node",
                factory="mim_perception.ros.nodes.tracker_node:TrackerNode",
                params_files=(str(cdir / "tracker.param.yaml"), *extra),
                remaps=(("~/in/detections", f"/{cam.name}/perception/out/detections"),),
                overrides=sim,
            ))
    return nodes


def ros_args(spec: NodeSpec) -> list[str]:
    """The node's ``--ros-args`` (what launch_ros would pass), for in-process Node(cli_args=...)."""
    args = ["--ros-args"]
    for f in spec.params_files:
        args += ["--params-file", f]
    for name, value in spec.overrides:
        args += ["-p", f"{name}:={_yaml_scalar(value)}"]
    for src, dst in spec.remaps:
        args += ["-r", f"{src}:={dst}"]
    return args


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def private_domain_id(pid: int | None = None) -> int:
    """A ROS domain id for a self-contained run (evaluation, soak) so another graph on this host (a vehicle
    stack, a second evaluation) cannot feed it frames or read its outputs. Fast DDS ids stop at 232."""
    return 120 + (os.getpid() if pid is None else pid) % 100


def fastdds_env(cfg: GraphConfig) -> dict[str, str]:
    """Environment for Fast DDS large-data transport (must be set before rclpy.init)."""
    if not cfg.fastdds_large_data or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return {}
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(config_dir() / "fastdds_large_data.xml")}
