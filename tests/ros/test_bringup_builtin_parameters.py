"""`tsg bringup --config FILE` gives the nodes rclpy's own parameters from FILE (use_sim_time, qos_overrides.*), as
`ros2 launch` does; the schema's parameters come from the validated config, never from these arguments."""

from __future__ import annotations

import rclpy
from rclpy.context import Context
from rclpy.node import Node

from trusted_scene_graph.cli import builtin_ros_args

PARAMS = """\
/**:
  ros__parameters:
    use_sim_time: true
    qos_overrides:
      /camera/color/image_raw:
        subscription:
          reliability: best_effort
          depth: 5
scene_graph:
  ros__parameters:
    relations:
      near_m: 0.2
other_node:
  ros__parameters:
    use_sim_time: false
"""


def node_parameters(ros_args: list[str], names: list[str]) -> dict[str, object]:
    context = Context()
    rclpy.init(args=["tsg", "--ros-args", *ros_args], context=context)
    try:
        node = Node("scene_graph", context=context, allow_undeclared_parameters=True,
                    automatically_declare_parameters_from_overrides=True)
        try:
            return {name: node.get_parameter(name).value for name in names}
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_files_rclpy_parameters_become_ros_args_and_reach_the_node(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    args = builtin_ros_args(path)
    # Only rclpy's own parameters, of this node's sections: not the schema's, not other_node's.
    assert args == ["-p", "use_sim_time:=true",
                    "-p", 'qos_overrides./camera/color/image_raw.subscription.reliability:="best_effort"',
                    "-p", "qos_overrides./camera/color/image_raw.subscription.depth:=5"]
    qos = "qos_overrides./camera/color/image_raw.subscription"
    assert node_parameters(args, ["use_sim_time", f"{qos}.reliability", f"{qos}.depth"]) == {
        "use_sim_time": True, f"{qos}.reliability": "best_effort", f"{qos}.depth": 5}


def test_a_date_like_value_reaches_the_node_as_the_string_rcl_reads_from_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("scene_graph:\n  ros__parameters:\n    qos_overrides:\n      /tf:\n        subscription:\n"
                    "          stamp: 2001-12-14\n")
    args = builtin_ros_args(path)
    assert args == ["-p", 'qos_overrides./tf.subscription.stamp:="2001-12-14"']
    name = "qos_overrides./tf.subscription.stamp"
    assert node_parameters(args, [name]) == node_parameters(["--params-file", str(path)], [name]) == {
        name: "2001-12-14"}


def test_the_users_own_ros_args_come_after_the_files_and_win(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert node_parameters([*builtin_ros_args(path), "-p", "use_sim_time:=false"], ["use_sim_time"]) == {
        "use_sim_time": False}


def test_no_config_file_adds_nothing():
    assert builtin_ros_args(None) == []


def test_tsg_bringup_passes_them_before_the_users_ros_args(tmp_path, monkeypatch):
    from trusted_scene_graph.cli import EXIT_OK, main
    from trusted_scene_graph.ros import bringup

    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    calls = []
    monkeypatch.setattr(bringup, "run_bringup", lambda config, autostart, ros_args: calls.append(
        (config["relations.near_m"], ros_args)) or EXIT_OK)
    assert main(["bringup", "--config", str(path), "--ros-args", "-p", "use_sim_time:=false"]) == EXIT_OK
    [(near_m, ros_args)] = calls
    assert near_m == 0.2 and ros_args == [*builtin_ros_args(path), "-p", "use_sim_time:=false"]
