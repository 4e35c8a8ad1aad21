"""Launch the mim_perception graph on an apt ROS 2 install (pip users: `mim-perception run`).

Both read the same description (mim_perception.ros.graph.describe), so they start the same nodes with
the same namespaces, remaps and parameter files. Arguments:
  params_file:=/path/to/user.param.yaml   extra parameters on top of the shipped config/*.param.yaml
  cameras:="front=/cam/front/image_raw,left=/cam/left/image_raw/compressed"   overrides graph.cameras
  use_sim_time:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mim_perception.core.config import load_config
from mim_perception.ros.graph import Camera, GraphConfig, describe, fastdds_env


def _nodes(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context) or None
    cameras = [c for c in LaunchConfiguration("cameras").perform(context).split(",") if c]
    overrides = {}
    if LaunchConfiguration("use_sim_time").perform(context).lower() == "true":
        overrides["graph.use_sim_time"] = True
    cfg = load_config(GraphConfig, params_file, overrides, prefix="graph.")
    specs = describe(cfg, [Camera.parse(c) for c in cameras] or None, params_file)
    env = fastdds_env(cfg)
    return [
        Node(
            package="mim_perception",
            executable=s.executable,
            name=s.name,
            namespace=s.namespace,
            parameters=[*s.params_files, dict(s.overrides)],
            remappings=list(s.remaps),
            additional_env=env,
            output="screen",
        )
        for s in specs
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value="", description="extra ROS 2 parameters file"),
        DeclareLaunchArgument("cameras", default_value="", description="NAME=TOPIC[,NAME=TOPIC...]"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        OpaqueFunction(function=_nodes),
    ])
