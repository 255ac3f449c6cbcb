"""Start the trusted_scene_graph nodes on a ROS 2 install.

    ros2 launch trusted_scene_graph trusted_scene_graph.launch.py config:=/path/params.yaml color_topic:=/cam/rgb
    ros2 launch trusted_scene_graph trusted_scene_graph.launch.py use_sim_time:=true   # replaying a bag with --clock

Thin on purpose: the node list and the topic arguments come from trusted_scene_graph.config.nodes and the
parameters from one parameter file validated by the same schema as ``tsg bringup`` (which runs the same node
classes in one process). Nodes are lifecycle nodes; with ``autostart: true`` (the default) they configure and
activate themselves, otherwise drive them with a lifecycle manager.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription
from trusted_scene_graph.config.nodes import NODES, TOPIC_ARGUMENTS, launch_flag, validated_parameter_file

PACKAGE = "trusted_scene_graph"


def _nodes(context, *args, **kwargs):
    # Validate before starting anything: a bad value fails the launch with the schema's message. The nodes read the
    # validated values (an integer for a float parameter, accepted by the schema, would fail rclpy's type check).
    # use_sim_time:=true sets the parameter for every node; false (the default) keeps the parameter file's value.
    use_sim_time = launch_flag("use_sim_time", LaunchConfiguration("use_sim_time").perform(context))
    # Topic arguments set the topic parameters, not rcl remappings: the schema checks them as it checks the file's
    # (a remapping took a rectified or malformed topic it refuses), and the node's parameters, /diagnostics and logs
    # name the topic it subscribes to (image_transport's suffix it adds itself). They override the file's, in the
    # file written for the nodes; an empty argument keeps the file's topic. A ConfigError fails the launch.
    topics = {parameter: topic for argument, parameter in TOPIC_ARGUMENTS.items()
              if (topic := LaunchConfiguration(argument).perform(context))}
    _, parameter_file = validated_parameter_file(LaunchConfiguration("config").perform(context),
                                                 {"use_sim_time": True} if use_sim_time else None, topics)
    return [
        LifecycleNode(package=PACKAGE, executable=spec.executable, name=spec.name, namespace="",
                      parameters=[parameter_file], output="screen")
        for spec in NODES
    ]


def generate_launch_description() -> LaunchDescription:
    default_config = os.path.join(get_package_share_directory(PACKAGE), "config", "default.yaml")
    arguments = [DeclareLaunchArgument("config", default_value=default_config,
                                       description="ROS 2 parameter file (see config/default.yaml)"),
                 DeclareLaunchArgument("use_sim_time", default_value="false",
                                       description="true: the nodes take time from /clock (a bag played with "
                                                   "--clock, a simulator); false keeps the parameter file's "
                                                   "use_sim_time (default false)")]
    arguments += [DeclareLaunchArgument(argument, default_value="",
                                        description=f"input topic: sets parameter {parameter}, checked by the "
                                                    "schema (default: keep the config's)")
                  for argument, parameter in TOPIC_ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])
