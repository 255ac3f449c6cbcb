"""The node list of a bringup, shared by ``tsg bringup`` and the ROS launch file (pure: no rclpy import).

Each node names the console script that runs it alone (what ``launch_ros`` starts) and the class the in-process
bringup instantiates, so both paths start the same code with the same parameters.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trusted_scene_graph.config.schema import NODE_NAME, Config, ConfigError, load_parameter_file, render_parameter_file
from trusted_scene_graph.files import replace_text


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str  # console script in [project.scripts], installed to lib/trusted_scene_graph on ROS installs
    node_class: str  # "module:Class"

    def load_class(self) -> type:
        module, _, attribute = self.node_class.partition(":")
        return getattr(importlib.import_module(module), attribute)


NODES: tuple[NodeSpec, ...] = (
    NodeSpec(NODE_NAME, "scene_graph_node", "trusted_scene_graph.ros.scene_graph_node:SceneGraphNode"),
)

# Launch arguments that remap an input topic: argument name -> parameter holding the topic the node subscribes to.
TOPIC_ARGUMENTS: dict[str, str] = {
    "color_topic": "topics.color",
    "depth_topic": "topics.depth",
    "camera_info_topic": "topics.camera_info",
    "instances_topic": "topics.instances",
}

# image_transport's topic suffix per transport, and which parameter chooses the transport of which topic.
TRANSPORT_SUFFIXES: dict[str, str] = {"raw": "", "compressed": "/compressed", "compressedDepth": "/compressedDepth"}
TRANSPORT_PARAMETERS: dict[str, str] = {"topics.color": "topics.color_transport",
                                        "topics.depth": "topics.depth_transport"}


def transport_suffix(config: Mapping[str, Any], topic_parameter: str) -> str:
    """What image_transport appends to the topic in ``topic_parameter`` for the configured transport."""
    transport_parameter = TRANSPORT_PARAMETERS.get(topic_parameter)
    return TRANSPORT_SUFFIXES[config[transport_parameter]] if transport_parameter else ""


def subscribed_topic(config: Mapping[str, Any], topic_parameter: str) -> str:
    """The topic the node subscribes for ``topic_parameter`` (with the transport's suffix, e.g. '/compressed')."""
    return config[topic_parameter] + transport_suffix(config, topic_parameter)


TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
# Published by the scene-graph node and added to bags by `tsg label`: one DenseReward per reward pair per frame.
REWARD_TOPIC = "/scene_graph/reward"


def tf_topic_names(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The tf topics the scene-graph node subscribes: both with ``extrinsic.source: tf`` (the camera pose) or
    ``reward.ee_tf_frame`` (the end effector's pose), else none."""
    reads_tf = config["extrinsic.source"] == "tf" or bool(config["reward.ee_tf_frame"])
    return (TF_STATIC_TOPIC, TF_TOPIC) if reads_tf else ()


def input_topic_names(config: Mapping[str, Any], needs_depth: bool, needs_instances: bool) -> list[tuple[str, str]]:
    """(synchroniser name, topic) of every camera input the scene-graph node subscribes, anchor (colour) first.

    Shared by the node and offline evaluation, so both pair the same topics.
    """
    inputs = [("color", subscribed_topic(config, "topics.color"))]
    if needs_depth:
        inputs.append(("depth", subscribed_topic(config, "topics.depth")))
    inputs.append(("camera_info", config["topics.camera_info"]))
    if needs_instances:
        inputs.append(("instances", config["topics.instances"]))
    return inputs


def launch_flag(argument: str, text: str) -> bool:
    """A boolean launch argument's value, read as launch's conditions read one ('true'/'false', '1'/'0', any case)."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ConfigError(f"launch argument {argument}: {text!r} is neither true nor false")


def validated_parameter_file(config_path: str, ros_parameters: Mapping[str, Any] | None = None,
                             overrides: Mapping[str, Any] | None = None) -> tuple[Config, str]:
    """Validate the parameter file at ``config_path`` with the schema, apply ``overrides`` (schema parameters: the
    launch file's topic arguments), and write the validated values as a new parameter file; returns (the Config, the
    new file's path) for a launch file to pass to its nodes. Written into the file rather than passed beside it:
    launch_ros reads a parameter given as a string through YAML again (``color_topic:=on`` would reach the node as
    a bool), where the file's strings are quoted.

    The nodes get the validated values, not the file as written: the schema reads ``1`` for a float parameter as
    ``1.0`` (as ``tsg bringup --config`` does), where rclpy refuses an integer for a double parameter. Only the
    sections for our node are read (the file may hold other nodes'); rclpy's own parameters it sets for the node
    (``use_sim_time``...) are kept, updated with ``ros_parameters`` (the launch file's ``use_sim_time:=true``)."""
    config, builtins = load_parameter_file(config_path)
    if overrides:
        config = config.with_overrides(overrides)  # a ConfigError names the parameter and the value
    text = render_parameter_file(config, {**builtins, **(ros_parameters or {})})
    # Named by its content, so launches of one config share one file instead of leaving a new one each time; in a
    # directory of this user's own (mode 0700), as the shared temporary directory's names are anyone's to take.
    directory = Path(tempfile.gettempdir()) / f"tsg-params-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_uid != os.getuid():
        raise ConfigError(f"{directory} belongs to another user; remove it or set TMPDIR")
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        # Atomic: a node started meanwhile reads the whole file; one partial file per process, as launches of one
        # config may write it at once.
        replace_text(path, text, partial=path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    return config, str(path)
