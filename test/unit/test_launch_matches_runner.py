"""The launch file and `mim-perception run` must start the same graph (one shared description).

launch/launch_ros have no PyPI wheels, so they are replaced by recording fakes: the launch file's own
code runs, and what it would start is compared with what the runner builds.
"""

import importlib.util
import sys
import types
from pathlib import Path

from mim_perception.ros.graph import ros_args
from mim_perception.ros.runner import graph_from_args

LAUNCH = Path(__file__).resolve().parents[2] / "launch" / "mim_perception.launch.py"


class _Rec:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration:
    values: dict = {}

    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return self.values.get(self.name, "")


def _load_launch(monkeypatch):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda items: items
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = _Rec
    actions.OpaqueFunction = _Rec
    subs = types.ModuleType("launch.substitutions")
    subs.LaunchConfiguration = _LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = _Rec
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs,
                      "launch_ros": launch_ros, "launch_ros.actions": ros_actions}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("mim_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch_nodes(monkeypatch, values):
    module = _load_launch(monkeypatch)
    monkeypatch.setattr(_LaunchConfiguration, "values", values)
    items = module.generate_launch_description()
    opaque = next(i for i in items if i.kwargs.get("function"))
    return opaque.kwargs["function"](None)


def _as_ros_args(node):
    k = node.kwargs
    args = ["--ros-args"]
    params = k["parameters"]
    for f in params[:-1]:
        args += ["--params-file", f]
    for name, value in params[-1].items():
        args += ["-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}"]
    for src, dst in k["remappings"]:
        args += ["-r", f"{src}:={dst}"]
    return (k["namespace"], k["name"], k["executable"], args)


def test_launch_and_runner_agree_default(monkeypatch):
    nodes = _launch_nodes(monkeypatch, {})
    _, specs = graph_from_args(None, [], None)
    assert nodes and len(nodes) == len(specs)
    assert [_as_ros_args(n) for n in nodes] == [(s.namespace, s.name, s.executable, ros_args(s)) for s in specs]


def test_launch_and_runner_agree_multi_camera_sim_time(monkeypatch, tmp_path):
    user = tmp_path / "user.param.yaml"
    user.write_text("/**:\n  ros__parameters:\n    graph:\n      standalone_tracker: true\n")
    cams = ["front=/cam/f/image_raw", "left=/cam/l/image_raw/compressed"]
    nodes = _launch_nodes(monkeypatch, {"params_file": str(user), "cameras": ",".join(cams), "use_sim_time": "true"})
    _, specs = graph_from_args(str(user), cams, True)
    assert {s.namespace for s in specs} == {"/front", "/left"}
    assert any(s.name == "tracker" for s in specs)
    assert [_as_ros_args(n) for n in nodes] == [(s.namespace, s.name, s.executable, ros_args(s)) for s in specs]
