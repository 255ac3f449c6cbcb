"""`tsg bringup`'s --ros-args are checked before the nodes start (rcl's own refusal, unknown parameter overrides), and
a node that fails to activate says why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context

from trusted_scene_graph.cli import EXIT_USAGE, main
from trusted_scene_graph.config import Config
from trusted_scene_graph.ros import scene_graph_node
from trusted_scene_graph.ros.bringup import Bringup, BringupError, check_parameter_overrides, run_bringup


@pytest.fixture
def context_with(request) -> Iterator[Context]:
    """A context initialised with the test's --ros-args (``@pytest.mark.parametrize`` on ``context_with``)."""
    context = Context()
    rclpy.init(args=["tsg", "--ros-args", *request.param], context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def test_unknown_ros_args_are_a_usage_error_naming_them(capsys):
    assert main(["bringup", "--ros-args", "--bogus"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tsg bringup: error: rclpy refused --ros-args --bogus: ['--bogus']"), err
    assert not rclpy.ok()  # nothing left initialised


def test_an_unparsable_ros_args_rule_is_a_bringup_error():
    with pytest.raises(BringupError, match=r"^rclpy refused --ros-args -p foo: .*Couldn't parse parameter override "
                                           r"rule: '-p foo'"):
        run_bringup(Config(), ros_args=["-p", "foo"])
    assert not rclpy.ok()


def test_a_misspelled_parameter_override_is_refused_with_the_close_name(capsys):
    assert main(["bringup", "--ros-args", "-p", "trust.treshold:=0.7"]) == EXIT_USAGE
    assert capsys.readouterr().err.startswith(
        "tsg bringup: error: node 'scene_graph': unknown parameter given in --ros-args: 'trust.treshold' (did you "
        "mean trust.threshold,")
    assert not rclpy.ok()


@pytest.mark.parametrize("context_with", [[
    "-p", "trust.threshold:=0.7", "-p", "use_sim_time:=true", "-p", "qos_overrides./tf.subscription.depth:=5",
    "-p", "other_node:made.up:=1"]], indirect=True)
def test_schema_rclpy_and_other_nodes_overrides_are_accepted(context_with):
    check_parameter_overrides(context_with)  # raises on any unknown name: none here


@pytest.mark.parametrize("context_with", [["-p", "scene_graph:trust.nonexistent:=1", "-p", "rewrd.pairs:=x"]],
                         indirect=True)
def test_every_override_meant_for_the_node_but_unknown_is_named(context_with):
    # One in a group of the schema's (trust.*), one close to a schema name (reward.pairs).
    with pytest.raises(BringupError, match=r"^node 'scene_graph': unknown parameters given in --ros-args: "
                                           r"('trust\.nonexistent'.*; 'rewrd\.pairs'|'rewrd\.pairs'.*; "
                                           r"'trust\.nonexistent')"):
        check_parameter_overrides(context_with)


@pytest.mark.parametrize("context_with", [["-p", "reward.pairs:=[]", "-p", "trust.treshold:=0.7"]], indirect=True)
def test_an_empty_list_override_is_read_not_declared_and_misspelled_names_beside_it_are_still_found(context_with):
    # rclpy refuses to declare an untyped `[]`: the check reads the overrides' names instead.
    with pytest.raises(BringupError, match=r"^node 'scene_graph': unknown parameter given in --ros-args: "
                                           r"'trust\.treshold'"):
        check_parameter_overrides(context_with)


@pytest.mark.parametrize("context_with", [["-p", "robot_description:=<robot/>", "-p", "zzz:=2"]], indirect=True)
def test_names_of_a_shared_section_for_every_node_are_left_alone(context_with):
    # A launch's parameter file often has a '/**' section (robot_description, settings of other nodes) that reaches
    # every node: names neither in the schema's groups nor close to its names are not this node's to refuse.
    check_parameter_overrides(context_with)


@pytest.mark.parametrize("context_with", [[]], indirect=True)
def test_a_failed_activation_reports_the_nodes_reason(context_with, monkeypatch):
    # A topic name rclpy refuses only when subscribing (the schema refuses it earlier: this stands for any failure).
    monkeypatch.setattr(scene_graph_node, "pose_topics", lambda config: [("goal", "not a topic")])
    with pytest.raises(BringupError, match=r"^node 'scene_graph': trigger_activate returned ERROR: "
                                           r"InvalidTopicNameException: (?s:.*)'not a topic'"):
        Bringup(Config(), autostart=True, context=context_with).start()


def test_an_rclpy_parameter_of_the_wrong_type_is_a_usage_error(capsys):
    assert main(["bringup", "--ros-args", "-p", "use_sim_time:=5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("tsg bringup: error: node 'scene_graph': ") and "use_sim_time" in err, err
    assert not rclpy.ok()
